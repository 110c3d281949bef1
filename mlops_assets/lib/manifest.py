"""Dataset manifests: which files a dataset folder holds, their labels and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mlops_assets.lib.errors import DatasetError
from mlops_assets.lib.hash_cache import FileHashCache
from mlops_assets.lib.splits import Split, assign_split

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})


@dataclass(frozen=True)
class ManifestEntry:
    """One image file: its path relative to the dataset root, label, size in bytes and SHA-256."""

    path: str
    label: str
    size: int
    sha256: str

    @property
    def split(self) -> Split:
        return assign_split(self.sha256)


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class DatasetManifest:
    """The content of a dataset folder at one moment; its data version is a hash of the entries."""

    root: str
    entries: tuple[ManifestEntry, ...]
    skipped: tuple[SkippedFile, ...] = field(default=())

    @property
    def data_version(self) -> str:
        return manifest_hash(self.entries)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(sorted({entry.label for entry in self.entries}))

    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(entry.label for entry in self.entries).items()))

    def split_counts(self) -> dict[str, int]:
        counts = Counter(entry.split for entry in self.entries)
        return {name: counts.get(name, 0) for name in ("train", "val", "test")}

    def absolute_path(self, entry: ManifestEntry) -> Path:
        return Path(self.root) / entry.path

    def to_json(self) -> str:
        return json.dumps(
            {
                "root": self.root,
                "data_version": self.data_version,
                "entries": [entry.__dict__ for entry in self.entries],
                "skipped": [skipped.__dict__ for skipped in self.skipped],
            },
            indent=1,
        )


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def manifest_hash(entries: tuple[ManifestEntry, ...] | list[ManifestEntry]) -> str:
    """Hash of (path, label, content) only: touching a file or copying the folder elsewhere changes nothing."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda item: item.path):
        digest.update(f"{entry.path}\t{entry.label}\t{entry.sha256}\n".encode())
    return digest.hexdigest()


def scan_dataset(root: str | os.PathLike[str], hash_cache: FileHashCache | None = None) -> DatasetManifest:
    """Read a `<root>/<label>/<file>` folder into a manifest; files that cannot belong are listed as skipped."""
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise DatasetError(
            f"Dataset folder {root_path} does not exist. Pass a folder laid out as <root>/<label>/<image file>."
        )
    entries: list[ManifestEntry] = []
    skipped: list[SkippedFile] = []
    for child in sorted(root_path.iterdir()):
        if child.name.startswith("."):
            continue
        if child.is_file():
            skipped.append(SkippedFile(child.name, "file directly under the dataset root has no label folder"))
            continue
        for path in sorted(child.rglob("*")):
            if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root_path).parts):
                continue
            relative = path.relative_to(root_path).as_posix()
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped.append(SkippedFile(relative, f"suffix {path.suffix or '(none)'} is not an image type"))
                continue
            stat = path.stat()
            digest = hash_cache.sha256(path, stat) if hash_cache else file_sha256(path)
            entries.append(ManifestEntry(relative, child.name, stat.st_size, digest))
    if not entries:
        raise DatasetError(
            f"No images found under {root_path}. Expected <root>/<label>/<file> with suffixes "
            f"{', '.join(sorted(IMAGE_SUFFIXES))}."
        )
    if hash_cache is not None:
        hash_cache.save()
    return DatasetManifest(str(root_path), tuple(entries), tuple(skipped))
