"""Stored artifacts on GCS, through dagster-gcp's GCS resource: `<url>/artifacts/<kind>/<key>/`, local copies in a
cache under MLOPS_HOME.

An artifact is published by uploading its files, then a marker object listing them, last (lib/storage/gcs.py): an
upload cut short is never taken for a result, and a reader downloads exactly the files the marker lists.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dagster_gcp import GCSResource

from mlops_assets import settings
from mlops_assets.lib.storage.gcs import (
    GcsLocation,
    download_directory,
    location_problem,
    parse_gcs_url,
    published_files,
    upload_directory,
)
from mlops_assets.resources.artifacts import ArtifactStore

ARTIFACTS_PREFIX = "artifacts"


def artifact_cache() -> Path:
    """Local copies of GCS artifacts: a cache, safe to delete (what is missing is downloaded again)."""
    return settings.mlops_home() / "cache" / "artifacts"


def _holds(directory: Path, files: dict[str, int]) -> bool:
    """Whether `directory` holds exactly `files` (relative path -> size in bytes)."""
    if not directory.is_dir():
        return False
    found = [path for path in directory.rglob("*") if path.is_file()]
    return {path.relative_to(directory).as_posix(): path.stat().st_size for path in found} == files


class GcsArtifactStore(ArtifactStore):
    """Artifacts below `url` (gs://bucket/prefix); the same URL holds step outputs and bentos in their own folders."""

    url: str
    gcs: GCSResource

    def location(self, kind: str, key: str) -> GcsLocation:
        return parse_gcs_url(self.url).child(ARTIFACTS_PREFIX, kind, key)

    def cache_path(self, kind: str, key: str) -> Path:
        # One cache per store URL, so two environments on one machine never share a copy.
        store = hashlib.sha256(self.url.rstrip("/").encode()).hexdigest()[:12]
        return artifact_cache() / store / kind / key

    def uri(self, kind: str, key: str) -> str:
        return str(self.location(kind, key))

    def fetch(self, kind: str, key: str) -> Path | None:
        client = self.gcs.get_client()
        location = self.location(kind, key)
        files = published_files(client, location)
        if files is None:
            return None
        path = self.cache_path(kind, key)
        # A cached copy is used only if it holds exactly the published files (it may be left from an upload that
        # was cut short, and another process may have published since).
        return path if _holds(path, files) else download_directory(client, location, path)

    @contextmanager
    def publishing(self, kind: str, key: str) -> Iterator[Path]:
        path = self.cache_path(kind, key)
        yield path
        upload_directory(self.gcs.get_client(), path, self.location(kind, key))

    def problem(self) -> str:
        try:
            location = parse_gcs_url(self.url)
        except ValueError as error:
            return str(error)
        return location_problem(self.gcs.get_client(), location, must_hold_objects=False)
