"""Where the dataset folder comes from: a configured path, or the bundled sample data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg

from mlops_assets import settings
from mlops_assets.lib.data.hash_cache import FileHashCache
from mlops_assets.lib.data.manifest import DatasetManifest, scan_dataset
from mlops_assets.lib.data.sample_data import SAMPLE_NAME, export_digits


class DatasetSource(dg.ConfigurableResource):
    """A dataset folder laid out as `<root>/<label>/<image>`; empty root means the bundled sample digits."""

    root: str = ""

    def resolve_root(self) -> Path:
        if self.root:
            return Path(self.root).expanduser().resolve()
        return export_digits(settings.datasets_dir() / SAMPLE_NAME)

    def scan(self) -> DatasetManifest:
        """The folder's manifest; unchanged files are not re-read (hashes cached by size, mtime and inode)."""
        root = self.resolve_root()
        key = hashlib.sha256(str(root).encode()).hexdigest()[:16]
        return scan_dataset(root, FileHashCache(settings.mlops_home() / "cache" / "file-hashes" / f"{key}.json"))
