"""Dataset manifests: which files a dataset folder holds, their labels and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mlops_assets.lib.data.hash_cache import FileHashCache
from mlops_assets.lib.data.splits import Split, assign_split
from mlops_assets.lib.errors import DatasetError

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


def _outside_root(path: Path, root: Path) -> str:
    """Why a symlink must be rejected (its target lies outside the root or is missing), or ''."""
    target = path.resolve()
    if not target.is_relative_to(root):
        return f"symlink points outside the dataset root (to {target}); rejected, copy the file into the dataset"
    if not target.exists():
        return "symlink is broken (its target does not exist)"
    return ""


def _label_folder_files(folder: Path, root: Path, skipped: list[SkippedFile]) -> list[Path]:
    """Regular files under a label folder; symlinked folders are not followed (no loops, no escapes)."""
    files = []
    for current, directories, names in os.walk(folder, followlinks=False):
        current_path = Path(current)
        directories[:] = sorted(name for name in directories if not name.startswith("."))
        for name in list(directories):
            if (current_path / name).is_symlink():
                directories.remove(name)
                relative = (current_path / name).relative_to(root).as_posix()
                skipped.append(SkippedFile(relative, "symlinked folder not followed; copy its files into the dataset"))
        files += [current_path / name for name in sorted(names) if not name.startswith(".")]
    return files


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
        if child.is_symlink() and (reason := _outside_root(child, root_path) or "symlinked label folder not followed"):
            skipped.append(SkippedFile(child.name, reason))
            continue
        if child.is_file():
            skipped.append(SkippedFile(child.name, "file directly under the dataset root has no label folder"))
            continue
        if not child.is_dir():
            continue
        for path in _label_folder_files(child, root_path, skipped):
            relative = path.relative_to(root_path).as_posix()
            if path.is_symlink() and (reason := _outside_root(path, root_path)):
                skipped.append(SkippedFile(relative, reason))
                continue
            if not path.is_file():
                skipped.append(SkippedFile(relative, "not a regular file"))
                continue
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
    return DatasetManifest(str(root_path), tuple(entries), tuple(sorted(skipped, key=lambda item: item.path)))
