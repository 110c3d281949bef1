"""The content-addressed dataset store on GCS: `<location>/blobs/<sha256>` and `<location>/manifests/<data
version>.json` with its chunks in `manifests/chunks/`, and a local cache of blobs, chunks and laid-out version
folders under `cache_dir`.

Blobs are uploaded with `if_generation_match=0` (an object that exists is never rewritten: its name is its content),
each after its content was checked against its name in the local cache; a version's manifest is uploaded last, so a
manifest in the bucket means every file it names was uploaded. Downloads are checked against the blob's name.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.lib.atomic import PARTIAL_PREFIX, atomic_write_bytes
from mlops_assets.lib.data import manifest_chunks
from mlops_assets.lib.data.content_store import (
    BLOBS,
    CHUNKS,
    MANIFESTS,
    BlobDirectory,
    Collected,
    KeptVersion,
    lay_out_version,
    missing_files_error,
    read_manifest,
)
from mlops_assets.lib.data.manifest import DatasetManifest, ManifestEntry
from mlops_assets.lib.storage.gcs import TRANSFER_THREADS, GcsLocation

if TYPE_CHECKING:
    from google.cloud import storage


class GcsContentStore:
    """Blobs and manifests below one `gs://bucket/prefix`; `cache_dir` holds local copies (safe to delete)."""

    def __init__(self, client: storage.Client, location: GcsLocation, cache_dir: Path) -> None:
        self.client = client
        self.location = location
        self.cache = BlobDirectory(cache_dir / BLOBS)
        self.versions = cache_dir / "versions"
        self.chunks = cache_dir / CHUNKS
        self.bucket = client.bucket(location.bucket)

    def _blob_key(self, sha256: str) -> str:
        return self.location.key(BLOBS, sha256)

    def _manifest_key(self, data_version: str) -> str:
        return self.location.key(MANIFESTS, f"{data_version}.json")

    def _chunk_key(self, chunk_id: str) -> str:
        return self.location.key(MANIFESTS, CHUNKS, f"{chunk_id}.json.gz")

    def _read_chunk(self, chunk_id: str) -> bytes:
        """A manifest chunk, from the local cache (chunks never change) or the bucket."""
        from google.api_core import exceptions

        cached = self.chunks / chunk_id
        if cached.is_file():
            return cached.read_bytes()
        try:
            data = self.bucket.blob(self._chunk_key(chunk_id)).download_as_bytes()
        except exceptions.NotFound:
            raise FileNotFoundError(f"chunk {chunk_id[:12]} is missing") from None
        atomic_write_bytes(cached, data)
        return data

    def stored_blobs(self) -> dict[str, int]:
        """Every blob in the bucket: SHA-256 -> size in bytes (one listing, a page per thousand objects)."""
        prefix = self.location.key(BLOBS) + "/"
        listing = self.client.list_blobs(self.bucket, prefix=prefix)
        return {blob.name[len(prefix) :]: int(blob.size or 0) for blob in listing}

    def has_manifest(self, data_version: str) -> bool:
        return self.bucket.blob(self._manifest_key(data_version)).exists()

    def keep(self, manifest: DatasetManifest, files_root: Path) -> KeptVersion:
        """Upload every file of `manifest` (read below `files_root`) the bucket lacks, then the manifest. Raises
        DatasetError when a file changed since the manifest was taken."""
        from google.cloud.storage import transfer_manager

        stored = self.stored_blobs()
        distinct: dict[str, ManifestEntry] = {}
        for entry in manifest.entries:
            distinct.setdefault(entry.sha256, entry)
        new = [entry for sha256, entry in distinct.items() if stored.get(sha256) != entry.size]
        # Through the local cache: the copy's content is checked against its name before anything is uploaded.
        for entry in new:
            self.cache.add_file(entry.sha256, files_root / entry.path)
        pairs = [(str(self.cache.path(entry.sha256)), self.bucket.blob(self._blob_key(entry.sha256))) for entry in new]
        transfer_manager.upload_many(
            pairs,
            skip_if_exists=True,
            worker_type=transfer_manager.THREAD,
            max_workers=TRANSFER_THREADS,
            raise_exception=True,
        )
        manifest_added = not self.has_manifest(manifest.data_version)
        if manifest_added:
            tree, chunks = manifest_chunks.encode(manifest)
            transfer_manager.upload_many(
                [(io.BytesIO(data), self.bucket.blob(self._chunk_key(chunk_id))) for chunk_id, data in chunks.items()],
                skip_if_exists=True,
                worker_type=transfer_manager.THREAD,
                max_workers=TRANSFER_THREADS,
                raise_exception=True,
            )
            # Last: a tree in the bucket means every chunk and file it names is there.
            self.bucket.blob(self._manifest_key(manifest.data_version)).upload_from_string(
                tree, content_type="application/json"
            )
        return KeptVersion(
            manifest.data_version, len(new), sum(entry.size for entry in new), len(distinct), manifest_added
        )

    def manifest(self, data_version: str) -> DatasetManifest:
        """The recorded manifest of `data_version`; raises StoreError when the bucket does not hold it."""
        from google.api_core import exceptions

        try:
            tree = self.bucket.blob(self._manifest_key(data_version)).download_as_text()
        except exceptions.NotFound:
            tree = None
        return read_manifest(data_version, tree, self._read_chunk, str(self.location))

    def missing(self, manifest: DatasetManifest) -> list[ManifestEntry]:
        """Entries whose blob is absent from the bucket or has another size (one listing; no content is read)."""
        stored = self.stored_blobs()
        return [entry for entry in manifest.entries if stored.get(entry.sha256) != entry.size]

    def _download(self, sha256: str) -> str:
        """Download blob `sha256` into the cache (checked against its name); '' or why it could not be."""
        from google.api_core import exceptions

        self.cache.path(sha256).parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f"{PARTIAL_PREFIX}{os.getpid()}-", dir=self.cache.path(sha256).parent)
        os.close(handle)
        try:
            self.bucket.blob(self._blob_key(sha256)).download_to_filename(partial)
        except exceptions.NotFound:
            Path(partial).unlink(missing_ok=True)
            return "missing"
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        self.cache.add_downloaded(sha256, Path(partial))
        return ""

    def local_root(self, manifest: DatasetManifest, verify: bool = False) -> Path:
        """`manifest`'s files laid out as a local folder, downloading the blobs the cache lacks. Raises StoreError
        naming the files missing from the bucket or corrupt."""
        needed = {entry.sha256: entry for entry in manifest.entries if not self.cache.has(entry.sha256, entry.size)}
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            outcomes = dict(zip(needed, pool.map(self._download, needed), strict=True))
        missing = [entry for entry in manifest.entries if outcomes.get(entry.sha256) == "missing"]
        if missing:
            raise missing_files_error(manifest, missing, str(self.location.child(BLOBS)))
        return lay_out_version(manifest, self.cache, self.versions / manifest.data_version, verify)

    def collect(self, keep_versions: set[str]) -> Collected:
        """Delete every blob in the bucket that none of `keep_versions` names (versions never kept here are
        ignored), and the local cache. Raises StoreError, before deleting anything, when a manifest to keep is
        corrupt."""
        keep_blobs: set[str] = set()
        kept_versions = []
        for data_version in sorted(keep_versions):
            if not self.has_manifest(data_version):
                continue
            keep_blobs |= {entry.sha256 for entry in self.manifest(data_version).entries}
            kept_versions.append(data_version)
        stored = self.stored_blobs()
        doomed = [sha256 for sha256 in stored if sha256 not in keep_blobs]
        for start in range(0, len(doomed), 100):
            # on_error: a blob deleted by a concurrent collection is gone, as wanted.
            self.bucket.delete_blobs(
                [self._blob_key(sha256) for sha256 in doomed[start : start + 100]], on_error=lambda _blob: None
            )
        shutil.rmtree(self.cache.root, ignore_errors=True)
        shutil.rmtree(self.versions, ignore_errors=True)
        kept = [sha256 for sha256 in stored if sha256 in keep_blobs]
        return Collected(
            len(doomed),
            sum(stored[sha256] for sha256 in doomed),
            len(kept),
            sum(stored[sha256] for sha256 in kept),
            tuple(kept_versions),
        )
