"""The dataset store: every recorded data version's files, kept once per content (SHA-256), with its manifest, so any
recorded version can be trained on again after its folder changed. One interface; a local implementation under
MLOPS_HOME and a GCS one under the environment's artifact URL (`<url>/datasets/`)."""

from __future__ import annotations

import hashlib
from abc import abstractmethod
from pathlib import Path

import dagster as dg
from dagster_gcp import GCSResource

from mlops_assets import settings
from mlops_assets.lib.data.content_store import Collected, KeptVersion, LocalContentStore
from mlops_assets.lib.data.gcs_content_store import GcsContentStore
from mlops_assets.lib.data.manifest import DatasetManifest, ManifestEntry
from mlops_assets.lib.storage.gcs import location_problem, parse_gcs_url

DATASETS_PREFIX = "datasets"


class DatasetStore(dg.ConfigurableResource):
    """Content-addressed dataset files and manifests (see lib/data/content_store.py)."""

    @abstractmethod
    def _store(self) -> LocalContentStore | GcsContentStore:
        """The content store this resource configures."""

    @abstractmethod
    def uri(self) -> str:
        """Where the store lives (a folder or a gs:// URL), for metadata and messages."""

    @abstractmethod
    def keep(self, manifest: DatasetManifest, files_root: Path) -> KeptVersion:
        """Keep the files of `manifest` the store lacks (read below `files_root`), then the manifest. Raises
        DatasetError when a file changed since the manifest was taken."""

    def has_manifest(self, data_version: str) -> bool:
        """Whether the store kept `data_version`."""
        return self._store().has_manifest(data_version)

    def manifest(self, data_version: str) -> DatasetManifest:
        """The kept manifest of `data_version`; raises StoreError when the store does not hold it."""
        return self._store().manifest(data_version)

    def missing(self, manifest: DatasetManifest) -> list[ManifestEntry]:
        """Entries whose file the store lacks (no content is read)."""
        return self._store().missing(manifest)

    def local_root(self, manifest: DatasetManifest, verify: bool = False) -> Path:
        """`manifest`'s files as a local folder (hard links to local blobs); with `verify`, each file's content is
        checked against its hash. Raises StoreError naming missing or corrupt files."""
        return self._store().local_root(manifest, verify)

    @abstractmethod
    def collect(self, keep_versions: set[str]) -> Collected:
        """Remove the files no version in `keep_versions` names."""

    @abstractmethod
    def problem(self) -> str:
        """Why the store cannot be used ('' when it can), checked before a run starts."""


def versions_cache() -> Path:
    """Laid-out version folders (hard links to blobs): a cache, rebuilt on demand."""
    return settings.mlops_home() / "cache" / "dataset-versions"


class LocalDatasetStore(DatasetStore):
    """The store in `root` (default MLOPS_HOME/dataset-store): `blobs/` and `manifests/`."""

    root: str = ""

    def base(self) -> Path:
        return Path(self.root).expanduser().resolve() if self.root else settings.mlops_home() / "dataset-store"

    def _store(self) -> LocalContentStore:
        key = hashlib.sha256(str(self.base()).encode()).hexdigest()[:12]
        return LocalContentStore(self.base(), versions_cache() / key)

    def uri(self) -> str:
        return str(self.base())

    def keep(self, manifest: DatasetManifest, files_root: Path) -> KeptVersion:
        # One keeper at a time on this home (and `mlops datasets gc` never while one keeps): blobs are written whole
        # either way, but a collection must not remove a blob a run has just checked is there.
        with settings.home_lock("dataset-store"):
            return self._store().keep(manifest, files_root)

    def collect(self, keep_versions: set[str]) -> Collected:
        with settings.home_lock("dataset-store"):
            return self._store().collect(keep_versions)

    def problem(self) -> str:
        base = self.base()
        existing = next((path for path in (base, *base.parents) if path.exists()), None)
        if existing is not None and not existing.is_dir():
            return f"{existing} is a file, not a folder"
        return ""


class GcsDatasetStore(DatasetStore):
    """The store below `url` (gs://bucket/prefix, the environment's artifact URL) in `datasets/`; blobs are cached
    under MLOPS_HOME/cache/dataset-store."""

    url: str
    gcs: GCSResource

    def _store(self) -> GcsContentStore:
        location = parse_gcs_url(self.url).child(DATASETS_PREFIX)
        key = hashlib.sha256(str(location).encode()).hexdigest()[:12]
        return GcsContentStore(self.gcs.get_client(), location, settings.mlops_home() / "cache" / "dataset-store" / key)

    def uri(self) -> str:
        return str(parse_gcs_url(self.url).child(DATASETS_PREFIX))

    def keep(self, manifest: DatasetManifest, files_root: Path) -> KeptVersion:
        return self._store().keep(manifest, files_root)

    def collect(self, keep_versions: set[str]) -> Collected:
        return self._store().collect(keep_versions)

    def problem(self) -> str:
        try:
            location = parse_gcs_url(self.url)
        except ValueError as error:
            return str(error)
        return location_problem(self.gcs.get_client(), location, must_hold_objects=False)
