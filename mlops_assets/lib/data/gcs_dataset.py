"""A dataset on GCS (`gs://bucket/prefix/<label>/<file>`): its manifest, and its files as a local folder.

Objects are hashed once per generation: the listing gives each object's generation (new whenever its content is
replaced), and a hash cache keyed by name and generation answers for unchanged objects without reading them. What
is read is kept in a local mirror (a cache: `<cache>/<location key>/<relative name>`), so validation decodes from
local files; a mirror file is trusted only while its size and mtime are those recorded when it was downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.lib.atomic import atomic_write_text
from mlops_assets.lib.data.manifest import DatasetManifest, file_sha256
from mlops_assets.lib.data.object_manifest import StoredObject, scan_objects
from mlops_assets.lib.errors import DatasetError
from mlops_assets.lib.storage.gcs import TRANSFER_THREADS, GcsLocation, parse_gcs_url

if TYPE_CHECKING:
    from google.cloud import storage


@dataclass(frozen=True)
class _Mirrored:
    """What the cache knows of one object: the generation and size it was hashed at, its SHA-256, and the mtime
    (ns) of the mirror file holding that content (0: not mirrored)."""

    generation: str
    size: int
    sha256: str
    mirror_mtime_ns: int = 0


class GcsDataset:
    """The objects below one `gs://bucket/prefix`, with a hash cache and a local mirror under `cache_dir`."""

    def __init__(self, client: storage.Client, location: GcsLocation, cache_dir: Path) -> None:
        self.client = client
        self.location = location
        key = hashlib.sha256(str(location).encode()).hexdigest()[:16]
        self.mirror = cache_dir / key
        self._cache_file = cache_dir / f"{key}.json"
        self._known: dict[str, _Mirrored] = {}
        if self._cache_file.exists():
            self._known = {name: _Mirrored(*row) for name, row in json.loads(self._cache_file.read_text()).items()}
        # Files opened to look at their header (suffixes that name no image type): their hashes are kept too.
        self._sniffed: set[str] = set()
        self.downloaded = 0  # objects read by this instance (the tests check that unchanged ones are not)

    @classmethod
    def for_manifest(cls, client: storage.Client, manifest: DatasetManifest, cache_dir: Path) -> GcsDataset:
        """The dataset a manifest was scanned from (its root is the gs:// URL)."""
        try:
            return cls(client, parse_gcs_url(manifest.root), cache_dir)
        except ValueError as error:
            raise DatasetError(f"The manifest's root {manifest.root!r} is not on GCS ({error}).") from None

    def list_objects(self) -> list[StoredObject]:
        """Every object below the prefix, named relative to it."""
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        return [
            StoredObject(blob.name[len(prefix) :], int(blob.size or 0), str(blob.generation))
            for blob in self.client.list_blobs(self.location.bucket, prefix=prefix)
        ]

    def scan(self) -> DatasetManifest:
        """The manifest (same entries, skipped entries and data version as the same files in a folder); only
        objects new or replaced since the last scan are read. Raises DatasetError when no image file is found."""
        manifest = scan_objects(str(self.location), self.list_objects(), self)
        self._save(keep={entry.path for entry in manifest.entries} | set(self._sniffed))
        return manifest

    def sha256s(self, objects: list[StoredObject]) -> list[str]:
        unknown = [stored for stored in objects if self._hash_of(stored) is None]
        with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
            list(pool.map(self._download, unknown))
        return [self._known[stored.name].sha256 for stored in objects]

    def local_file(self, stored: StoredObject) -> Path:
        """A local copy of the object's current content (downloaded when the mirror lacks it)."""
        self._sniffed.add(stored.name)
        if self._mirror_file(stored.name, self._hash_of(stored)) is None:
            self._download(stored)
        return self.mirror / stored.name

    def local_root(self, manifest: DatasetManifest) -> Path:
        """A local folder holding every entry of `manifest` at its relative path with the recorded content.

        Raises DatasetError naming the object when one is gone or changed since the manifest was taken.
        """
        missing = [entry for entry in manifest.entries if self._mirror_file(entry.path, entry.sha256) is None]
        if missing:
            current = {stored.name: stored for stored in self.list_objects()}
            gone = [entry.path for entry in missing if entry.path not in current]
            if gone:
                raise DatasetError(
                    f"{len(gone)} file(s) of the dataset are gone from {self.location} since raw_images listed them, "
                    f"e.g. {self.location.child(gone[0])}; rematerialize raw_images."
                )
            with ThreadPoolExecutor(TRANSFER_THREADS) as pool:
                list(pool.map(self._download, [current[entry.path] for entry in missing]))
            for entry in missing:
                if self._known[entry.path].sha256 != entry.sha256:
                    raise DatasetError(
                        f"{self.location.child(entry.path)} changed since raw_images listed it (SHA-256 "
                        f"{self._known[entry.path].sha256[:12]}, not {entry.sha256[:12]}); rematerialize raw_images."
                    )
            self._save(keep=set(self._known))
        return self.mirror

    def _hash_of(self, stored: StoredObject) -> str | None:
        known = self._known.get(stored.name)
        if known is not None and known.generation == stored.generation and known.size == stored.size:
            return known.sha256
        return None

    def _mirror_file(self, name: str, sha256: str | None) -> Path | None:
        """The mirror file of `name` if it holds the content with `sha256`, as downloaded."""
        known = self._known.get(name)
        if sha256 is None or known is None or known.sha256 != sha256 or not known.mirror_mtime_ns:
            return None
        path = self.mirror / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return path if (stat.st_size, stat.st_mtime_ns) == (known.size, known.mirror_mtime_ns) else None

    def _download(self, stored: StoredObject) -> None:
        """Download this generation of the object into the mirror (through a partial file) and record its hash."""
        path = self.mirror / stored.name
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f".partial-{os.getpid()}-", dir=path.parent)
        os.close(handle)
        try:
            blob = self.client.bucket(self.location.bucket).blob(
                self.location.key(stored.name), generation=int(stored.generation) if stored.generation else None
            )
            blob.download_to_filename(partial)  # checksums are verified by the library
            digest = file_sha256(Path(partial))
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        stat = path.stat()
        self._known[stored.name] = _Mirrored(stored.generation, stat.st_size, digest, stat.st_mtime_ns)
        self.downloaded += 1

    def _save(self, keep: set[str]) -> None:
        rows = {name: list(vars(known).values()) for name, known in self._known.items() if name in keep}
        atomic_write_text(self._cache_file, json.dumps(rows))
