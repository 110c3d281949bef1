"""A manifest as the dataset store keeps it: a small tree document naming content-addressed chunks of entries, so a
version that adds one image to a large dataset adds one chunk, not a whole new manifest.

Entries go to a chunk by a hash of their path (so an added file changes one chunk); the number of chunks grows with
the dataset (about CHUNK_ENTRIES entries each, a power of two). A chunk is gzip-compressed JSON, named by the SHA-256
of its bytes. Entries are put back in the order `scan_dataset` lists them (labels sorted; in each folder its files
sorted by name, then its subfolders), which is the order the decoded arrays follow.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable

from mlops_assets.lib.data.manifest import DatasetManifest, ManifestEntry, SkippedFile, manifest_hash

FORMAT = 1
CHUNK_ENTRIES = 256
MAX_CHUNKS = 4096


def walk_key(path: str) -> tuple:
    """The position of `path` in `os.walk` order below the dataset root: in a folder, its files by name, then its
    subfolders by name."""
    *folders, name = path.split("/")
    return (*((1, folder) for folder in folders), (0, name))


def chunk_count(entries: int) -> int:
    count = 1
    while count * CHUNK_ENTRIES < entries and count < MAX_CHUNKS:
        count *= 2
    return count


def _bucket(path: str, count: int) -> int:
    return int(hashlib.sha256(path.encode()).hexdigest()[:8], 16) % count


def encode(manifest: DatasetManifest) -> tuple[str, dict[str, bytes]]:
    """(the tree document, {chunk id: chunk bytes}) of `manifest`; equal manifests give equal bytes."""
    count = chunk_count(len(manifest.entries))
    buckets: list[list[list]] = [[] for _ in range(count)]
    for entry in manifest.entries:
        buckets[_bucket(entry.path, count)].append([entry.path, entry.label, entry.size, entry.sha256])
    chunks: dict[str, bytes] = {}
    ids = []
    for rows in buckets:
        data = gzip.compress(json.dumps(sorted(rows), separators=(",", ":")).encode(), mtime=0)
        ids.append(hashlib.sha256(data).hexdigest())
        chunks[ids[-1]] = data
    tree = {
        "format": FORMAT,
        "root": manifest.root,
        "data_version": manifest.data_version,
        "label_folders": list(manifest.label_folders),
        "skipped": [skipped.__dict__ for skipped in manifest.skipped],
        "chunks": ids,  # one per bucket, in bucket order (empty buckets share one chunk)
    }
    return json.dumps(tree, separators=(",", ":")), chunks


class ManifestFormatError(ValueError):
    """A tree document or chunk that is not what `encode` writes, or whose entries do not hash to its version."""


def decode(tree_text: str, read_chunk: Callable[[str], bytes]) -> DatasetManifest:
    """The manifest of a tree document, its chunks read with `read_chunk(chunk id)`. Raises ManifestFormatError when
    a chunk's bytes do not match its id, or the entries do not hash to the recorded data version; `read_chunk`'s
    FileNotFoundError for a chunk that is gone."""
    try:
        tree = json.loads(tree_text)
        rows = []
        for chunk_id in dict.fromkeys(tree["chunks"]):
            data = read_chunk(chunk_id)
            if hashlib.sha256(data).hexdigest() != chunk_id:
                raise ManifestFormatError(f"chunk {chunk_id[:12]} does not hash to its name")
            rows += json.loads(gzip.decompress(data))
        entries = tuple(ManifestEntry(*row) for row in sorted(rows, key=lambda row: walk_key(row[0])))
        manifest = DatasetManifest(
            tree["root"],
            entries,
            tuple(SkippedFile(**skipped) for skipped in tree["skipped"]),
            tuple(tree["label_folders"]),
        )
        recorded = tree["data_version"]
    except FileNotFoundError:
        raise  # a chunk that is gone: the caller names it
    except (ValueError, KeyError, TypeError, OSError, EOFError) as error:  # gzip's BadGzipFile is an OSError
        raise ManifestFormatError(str(error)) from None
    if manifest_hash(manifest.entries, manifest.empty_labels) != recorded:
        raise ManifestFormatError(f"its entries do not hash to data version {recorded[:16]}")
    return manifest
