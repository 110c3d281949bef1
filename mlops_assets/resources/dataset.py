"""Where datasets come from: one interface, a folder implementation here and a GCS one in gcs_dataset.py."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from pathlib import Path

import dagster as dg

from mlops_assets import settings
from mlops_assets.lib.data.hash_cache import FileHashCache
from mlops_assets.lib.data.manifest import DatasetManifest, scan_dataset
from mlops_assets.lib.data.sample_data import SAMPLE_NAME, export_digits
from mlops_assets.lib.errors import DatasetError

# The run-config setting that chooses the dataset, named in errors (the CLI's --dataset and MLOPS_DATASET set it).
ROOT_SETTING = "resources.dataset.config.root"


class DatasetSource(dg.ConfigurableResource):
    """A dataset laid out as `<root>/<label>/<image>`: its manifest, and its files as a local folder for decoding."""

    root: str = ""

    @abstractmethod
    def scan(self) -> DatasetManifest:
        """The dataset's manifest (content hashes; unchanged files are not read again). Raises DatasetError."""

    @abstractmethod
    def local_root(self, manifest: DatasetManifest) -> Path:
        """A local folder holding `manifest`'s files at their relative paths, read from wherever the manifest was
        taken (its own root, not this resource's: a later run may be configured for another dataset)."""

    @abstractmethod
    def problem(self) -> str:
        """Why `root` cannot be read ('' when it can), checked before a run starts."""


class FolderDatasetSource(DatasetSource):
    """A dataset folder on this machine; an empty root means the bundled sample digits."""

    def resolve_root(self) -> Path:
        if self.root:
            return Path(self.root).expanduser().resolve()
        return export_digits(settings.datasets_dir() / SAMPLE_NAME)

    def scan(self) -> DatasetManifest:
        """The folder's manifest; unchanged files are not re-read (hashes cached by size, mtime and inode)."""
        root = self.resolve_root()
        key = hashlib.sha256(str(root).encode()).hexdigest()[:16]
        return scan_dataset(root, FileHashCache(settings.mlops_home() / "cache" / "file-hashes" / f"{key}.json"))

    def local_root(self, manifest: DatasetManifest) -> Path:
        root = Path(manifest.root)
        if not root.is_dir():
            raise DatasetError(
                f"The dataset folder {manifest.root} that raw_images listed is gone; restore it, or rematerialize "
                "raw_images from the dataset as it is now."
            )
        return root

    def problem(self) -> str:
        if not self.root:
            return ""
        if "://" in self.root:
            return (
                "a URL, but this environment reads datasets from folders; choose an environment whose storage "
                "reads it (MLOPS_ENV=staging or production for gs://) or pass a folder"
            )
        root = Path(self.root).expanduser()
        return "" if root.is_dir() else "no such folder; pass a folder laid out as <root>/<label>/<image file>"
