"""Datasets on GCS: `gs://bucket/prefix/<label>/<file>`, read through dagster-gcp's GCS resource."""

from __future__ import annotations

from pathlib import Path

from dagster_gcp import GCSResource

from mlops_assets import settings
from mlops_assets.lib.data.gcs_dataset import GcsDataset
from mlops_assets.lib.data.manifest import DatasetManifest
from mlops_assets.lib.errors import DatasetError
from mlops_assets.lib.storage.gcs import location_problem, parse_gcs_url
from mlops_assets.resources.dataset import DatasetSource


def dataset_cache() -> Path:
    """Object hashes and the local mirror of GCS datasets: a cache, safe to delete."""
    return settings.mlops_home() / "cache" / "gcs-datasets"


class GcsDatasetSource(DatasetSource):
    """A dataset below `root` = gs://bucket/prefix; objects are hashed once per generation and mirrored locally."""

    gcs: GCSResource

    def _dataset(self) -> GcsDataset:
        try:
            location = parse_gcs_url(self.root)
        except ValueError as error:
            raise DatasetError(
                f"Dataset {error}; set MLOPS_DATASET (or the run's dataset) to gs://bucket/prefix."
            ) from None
        return GcsDataset(self.gcs.get_client(), location, dataset_cache())

    def scan(self) -> DatasetManifest:
        return self._dataset().scan()

    def local_root(self, manifest: DatasetManifest) -> Path:
        return GcsDataset.for_manifest(self.gcs.get_client(), manifest, dataset_cache()).local_root(manifest)

    def problem(self) -> str:
        if not self.root:
            return "not set; this environment reads datasets from GCS: set it to gs://bucket/prefix"
        try:
            location = parse_gcs_url(self.root)
        except ValueError as error:
            return str(error)
        return location_problem(self.gcs.get_client(), location, must_hold_objects=True)
