"""A content-addressed store of dataset files: each distinct content kept once, as a file named by its SHA-256, with
the manifest of every data version recorded, so any recorded version can be laid out again as a folder.

Blobs are copies (a copy-on-write clone where the file system offers one), never hard links to the dataset's own
files: an image edited in place in the dataset folder would otherwise change the stored version with it. A version's
folder, the other way round, is made of hard links to the blobs (copies where the file system refuses links), so
laying out a version costs no bytes. Blobs are read-only; their content is checked against their name whenever a
version is laid out with `verify`.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from mlops_assets.lib.atomic import (
    PARTIAL_PREFIX,
    atomic_directory,
    atomic_write_bytes,
    atomic_write_text,
    partial_owner_alive,
)
from mlops_assets.lib.data import manifest_chunks
from mlops_assets.lib.data.manifest import DatasetManifest, ManifestEntry
from mlops_assets.lib.errors import DatasetError

BLOBS = "blobs"
MANIFESTS = "manifests"
# Chunks of manifests (manifest_chunks.py), below MANIFESTS.
CHUNKS = "chunks"
# Linux's FICLONE ioctl (linux/fs.h): the destination shares the source's extents until either is written.
_FICLONE = 0x40049409
_CHUNK = 1 << 20
# Link errors that mean "this file system (or this pair of folders) cannot hard-link": copy instead.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES}
# How many missing or corrupt files an error names.
EXAMPLES = 5


class StoreError(DatasetError):
    """A recorded data version cannot be laid out: its manifest or some of its files are missing or corrupt."""


@dataclass(frozen=True)
class KeptVersion:
    """What keeping one data version added to the store: new blobs and their bytes, and the distinct contents the
    version names (`blobs_total`); `manifest_added` is false when the version was kept before."""

    data_version: str
    blobs_added: int
    bytes_added: int
    blobs_total: int
    manifest_added: bool


@dataclass(frozen=True)
class Collected:
    """What garbage collection removed and kept: blob counts and bytes, and the data versions whose files it kept."""

    blobs_removed: int
    bytes_removed: int
    blobs_kept: int
    bytes_kept: int
    versions_kept: tuple[str, ...]


def read_manifest(
    data_version: str, tree_text: str | None, read_chunk: Callable[[str], bytes], where: str
) -> DatasetManifest:
    """The manifest of `data_version` from its stored tree document (None: the store never kept it) and chunks
    (`read_chunk` raises FileNotFoundError for a missing one). Raises StoreError naming what is missing or corrupt."""
    if tree_text is None:
        raise StoreError(
            f"Data version {data_version[:16]} is not in the dataset store ({where}): no run recorded it here. "
            "Record it by running on its source."
        )
    try:
        manifest = manifest_chunks.decode(tree_text, read_chunk)
    except FileNotFoundError as error:
        raise StoreError(
            f"The stored manifest of data version {data_version[:16]} is incomplete ({error}) in the dataset store "
            f"({where}). Restore the store from a backup, or record the version again from its source."
        ) from None
    except manifest_chunks.ManifestFormatError as error:
        raise StoreError(
            f"The stored manifest of data version {data_version[:16]} is corrupt ({error}) in the dataset store "
            f"({where}). Restore the store from a backup, or record the version again from its source."
        ) from None
    if manifest.data_version != data_version:
        raise StoreError(
            f"The stored manifest of data version {data_version[:16]} describes data version "
            f"{manifest.data_version[:16]}; the dataset store ({where}) is corrupt. Restore it from a backup."
        )
    return manifest


def _describe(entries: list[ManifestEntry]) -> str:
    shown = ", ".join(f"{entry.path} (SHA-256 {entry.sha256[:12]})" for entry in entries[:EXAMPLES])
    return f"{shown}{', ...' if len(entries) > EXAMPLES else ''}"


def missing_files_error(manifest: DatasetManifest, missing: list[ManifestEntry], where: str) -> StoreError:
    """The error for a recorded version some of whose files the store no longer holds."""
    return StoreError(
        f"Data version {manifest.data_version[:16]} cannot be laid out: {len(missing)} of its "
        f"{len(manifest.entries)} files are missing from the dataset store ({where}), e.g. {_describe(missing)}. "
        "They were deleted (or collected by `mlops datasets gc`); train on another version, or record this one "
        "again from a source that still holds these files."
    )


def _clone_or_copy(source: Path, destination: int) -> str:
    """Fill the open file `destination` with `source`'s bytes (a clone where the file system supports it); returns
    the SHA-256 of what was written."""
    digest = hashlib.sha256()
    with source.open("rb") as reader:
        try:
            fcntl.ioctl(destination, _FICLONE, reader.fileno())
        except OSError:
            while chunk := reader.read(_CHUNK):
                digest.update(chunk)
                os.write(destination, chunk)
            return digest.hexdigest()
    with open(destination, "rb", closefd=False) as clone:
        clone.seek(0)
        return hashlib.file_digest(clone, "sha256").hexdigest()


def file_digest(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class BlobDirectory:
    """Files named by their SHA-256 under `root/<first two hex digits>/<sha256>`, read-only once written."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def has(self, sha256: str, size: int | None = None) -> bool:
        try:
            found = self.path(sha256).stat()
        except FileNotFoundError:
            return False
        return size is None or found.st_size == size

    def add_file(self, sha256: str, source: Path) -> int:
        """Keep `source` as blob `sha256`; returns the bytes added (0 when the blob was there). Raises DatasetError
        when `source`'s content no longer has that hash (the file changed after it was scanned)."""
        if self.has(sha256):
            return 0
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f"{PARTIAL_PREFIX}{os.getpid()}-", dir=target.parent)
        try:
            try:
                digest = _clone_or_copy(source, handle)
            finally:
                os.close(handle)
            if digest != sha256:
                raise DatasetError(
                    f"{source} changed since the dataset was scanned (its SHA-256 is now {digest[:12]}, not "
                    f"{sha256[:12]}); run again once the folder is no longer being written."
                )
            os.chmod(partial, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
            os.replace(partial, target)  # a concurrent writer of the same content leaves the same bytes
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
        return target.stat().st_size

    def add_downloaded(self, sha256: str, downloaded: Path) -> None:
        """Move a freshly downloaded file into place as blob `sha256` after checking its content; raises StoreError
        naming the blob when the content has another hash."""
        digest = file_digest(downloaded)
        if digest != sha256:
            downloaded.unlink(missing_ok=True)
            raise StoreError(
                f"Blob {sha256} of the dataset store is corrupt: its content hashes to {digest[:12]}. Delete it from "
                "the store and record the version again from a source that holds the file."
            )
        os.chmod(downloaded, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        self.path(sha256).parent.mkdir(parents=True, exist_ok=True)
        os.replace(downloaded, self.path(sha256))

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def blobs(self) -> Iterator[tuple[str, int]]:
        """(sha256, size in bytes) of every blob; leftovers of writers that died are removed on the way."""
        if not self.root.is_dir():
            return
        for fan_out in sorted(self.root.iterdir()):
            if not fan_out.is_dir():
                continue
            for entry in sorted(fan_out.iterdir()):
                if entry.name.startswith(PARTIAL_PREFIX):
                    if not partial_owner_alive(entry):
                        entry.unlink(missing_ok=True)
                    continue
                yield entry.name, entry.stat().st_size

    def corrupt(self, entry: ManifestEntry) -> str:
        """Why the blob of `entry` is not its content ('' when it is)."""
        digest = file_digest(self.path(entry.sha256))
        return "" if digest == entry.sha256 else f"content hashes to {digest[:12]}"


def _link_or_copy(blob: Path, destination: Path) -> None:
    try:
        os.link(blob, destination)
    except OSError as error:
        if error.errno not in _NO_LINK:
            raise
        shutil.copyfile(blob, destination)


def lay_out_version(manifest: DatasetManifest, blobs: BlobDirectory, destination: Path, verify: bool) -> Path:
    """A folder holding `manifest`'s image files at their relative paths (and its empty label folders): hard links to
    the blobs, copies where the file system refuses links. Built whole or not at all; reused when it exists.

    With `verify`, every blob's content is checked against its SHA-256 first (the whole version is read). Raises
    StoreError naming the missing or corrupt files.
    """
    missing = [entry for entry in manifest.entries if not blobs.has(entry.sha256, entry.size)]
    if missing:
        raise missing_files_error(manifest, missing, str(blobs.root))
    if verify:
        checked = {}
        for entry in manifest.entries:
            if entry.sha256 not in checked:
                checked[entry.sha256] = blobs.corrupt(entry)
        bad = [entry for entry in manifest.entries if checked[entry.sha256]]
        if bad:
            reasons = "; ".join(f"{item.path}: blob {blobs.path(item.sha256)} {checked[item.sha256]}" for item in bad)
            raise StoreError(
                f"Data version {manifest.data_version[:16]} cannot be laid out: {len(bad)} of its files are corrupt "
                f"in the dataset store ({reasons[:600]}). Delete those blobs and record the version again from a "
                "source that still holds the files, or train on another version."
            )
    if destination.is_dir():
        return destination
    with atomic_directory(destination) as staging:
        for label in manifest.label_folders:
            (staging / label).mkdir(parents=True, exist_ok=True)
        for entry in manifest.entries:
            target = staging / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            _link_or_copy(blobs.path(entry.sha256), target)
    return destination


class LocalContentStore:
    """The store in a local folder: `<root>/blobs/`, `<root>/manifests/<data version>.json` (with its chunks in
    `manifests/chunks/`); version folders are laid out under `versions` (a cache, rebuilt on demand)."""

    def __init__(self, root: Path, versions: Path) -> None:
        self.root = root
        self.blobs = BlobDirectory(root / BLOBS)
        self.versions = versions

    def manifest_path(self, data_version: str) -> Path:
        return self.root / MANIFESTS / f"{data_version}.json"

    def chunk_path(self, chunk_id: str) -> Path:
        return self.root / MANIFESTS / CHUNKS / f"{chunk_id}.json.gz"

    def has_manifest(self, data_version: str) -> bool:
        return self.manifest_path(data_version).is_file()

    def keep(self, manifest: DatasetManifest, files_root: Path) -> KeptVersion:
        """Keep every file `manifest` names (read below `files_root`) that the store lacks, then the manifest.

        Raises DatasetError when a file changed since the manifest was taken (nothing half-kept is recorded: the
        manifest is written last, so a version is kept only once all its files are).
        """
        added = bytes_added = 0
        distinct = {}
        for entry in manifest.entries:
            distinct.setdefault(entry.sha256, entry)
        for sha256, entry in distinct.items():
            if self.blobs.has(sha256, entry.size):
                continue
            written = self.blobs.add_file(sha256, files_root / entry.path)
            added += 1
            bytes_added += written
        manifest_added = not self.has_manifest(manifest.data_version)
        if manifest_added:
            tree, chunks = manifest_chunks.encode(manifest)
            for chunk_id, data in chunks.items():
                if not self.chunk_path(chunk_id).is_file():
                    atomic_write_bytes(self.chunk_path(chunk_id), data)
            atomic_write_text(self.manifest_path(manifest.data_version), tree)  # last: the version is kept whole
        return KeptVersion(manifest.data_version, added, bytes_added, len(distinct), manifest_added)

    def manifest(self, data_version: str) -> DatasetManifest:
        """The recorded manifest of `data_version`; raises StoreError when the store never kept it (or it is
        corrupt)."""
        try:
            tree = self.manifest_path(data_version).read_text()
        except FileNotFoundError:
            tree = None
        return read_manifest(data_version, tree, self._read_chunk, str(self.root))

    def _read_chunk(self, chunk_id: str) -> bytes:
        try:
            return self.chunk_path(chunk_id).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"chunk {chunk_id[:12]} is missing") from None

    def missing(self, manifest: DatasetManifest) -> list[ManifestEntry]:
        """Entries whose blob is absent or has another size (cheap: no content is read)."""
        return [entry for entry in manifest.entries if not self.blobs.has(entry.sha256, entry.size)]

    def local_root(self, manifest: DatasetManifest, verify: bool = False) -> Path:
        """`manifest`'s files laid out as a folder (see `lay_out_version`)."""
        return lay_out_version(manifest, self.blobs, self.versions / manifest.data_version, verify)

    def collect(self, keep_versions: set[str]) -> Collected:
        """Remove every blob that none of `keep_versions` names (versions this store never kept are ignored), and
        every laid-out version folder (a cache). Raises StoreError, before removing anything, when a manifest of a
        version to keep is corrupt."""
        keep_blobs: set[str] = set()
        kept_versions = []
        for data_version in sorted(keep_versions):
            if not self.has_manifest(data_version):
                continue  # never kept in this store (a model trained before the store existed): nothing to keep
            keep_blobs |= {entry.sha256 for entry in self.manifest(data_version).entries}
            kept_versions.append(data_version)
        removed = removed_bytes = kept = kept_bytes = 0
        for sha256, size in list(self.blobs.blobs()):
            if sha256 in keep_blobs:
                kept += 1
                kept_bytes += size
            else:
                self.blobs.remove(sha256)
                removed += 1
                removed_bytes += size
        # Laid-out folders hold hard links: a removed blob's bytes are freed only once its links are gone too.
        if self.versions.is_dir():
            for folder in self.versions.iterdir():
                shutil.rmtree(folder, ignore_errors=True)
        return Collected(removed, removed_bytes, kept, kept_bytes, tuple(kept_versions))
