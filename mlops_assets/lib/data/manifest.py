"""Dataset manifests: which files a dataset folder holds, their labels and content hashes."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mlops_assets.lib.data.dataset_files import file_skip_reason, folder_skip_reason, side_file_reason
from mlops_assets.lib.data.hash_cache import FileHashCache
from mlops_assets.lib.data.splits import Split, assign_split
from mlops_assets.lib.errors import DatasetError


@dataclass(frozen=True)
class ManifestEntry:
    """One image file: its path relative to the dataset root, label, size in bytes and SHA-256."""

    path: str
    label: str
    size: int
    sha256: str

    @property
    def split(self) -> Split:
        return assign_split(self.sha256, self.path.rsplit("/", 1)[-1])


@dataclass(frozen=True)
class SkippedFile:
    """A file or folder that is not an image of the dataset: its path, why, and the label folder it lies in ('' for
    entries directly under the root)."""

    path: str
    reason: str
    label: str = ""


@dataclass(frozen=True)
class DatasetManifest:
    """The content of a dataset folder at one moment; its data version is a hash of the entries."""

    root: str
    entries: tuple[ManifestEntry, ...]
    skipped: tuple[SkippedFile, ...] = field(default=())
    # Every label folder, including those holding no image file (which the class check reports).
    label_folders: tuple[str, ...] = field(default=())

    @property
    def data_version(self) -> str:
        return manifest_hash(self.entries, self.empty_labels)

    @property
    def labels(self) -> tuple[str, ...]:
        """Labels with at least one image file."""
        return tuple(sorted({entry.label for entry in self.entries}))

    @property
    def empty_labels(self) -> tuple[str, ...]:
        """Label folders without a single image file (empty, or only side files)."""
        return tuple(sorted(set(self.label_folders) - set(self.labels)))

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
                "label_folders": list(self.label_folders),
                "skipped": [skipped.__dict__ for skipped in self.skipped],
            },
            indent=1,
        )


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def manifest_hash(entries: tuple[ManifestEntry, ...] | list[ManifestEntry], empty_labels: tuple[str, ...] = ()) -> str:
    """Hash of (path, label, content) and of empty label folders only: touching a file or copying the folder
    elsewhere changes nothing, while creating an empty label folder does (the class check must see it)."""
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda item: item.path):
        digest.update(f"{entry.path}\t{entry.label}\t{entry.sha256}\n".encode())
    for label in sorted(empty_labels):
        digest.update(f"{label}/\t{label}\t(empty label folder)\n".encode())
    return digest.hexdigest()


def _outside_root(path: Path, root: Path) -> str:
    """Why a symlink must be rejected (its target lies outside the root or is missing), or ''."""
    target = path.resolve()
    if not target.is_relative_to(root):
        return f"symlink points outside the dataset root (to {target}); rejected, copy the file into the dataset"
    if not target.exists():
        return "symlink is broken (its target does not exist)"
    return ""


def _files_below(folder: Path) -> int:
    return sum(len(names) for _, _, names in os.walk(folder, followlinks=False))


def _skip_folder(folder: Path, root: Path, label: str, reason: str, skipped: list[SkippedFile]) -> None:
    count = _files_below(folder)
    relative = folder.relative_to(root).as_posix() + "/"
    skipped.append(SkippedFile(relative, f"{reason} ({count} file(s) in it are not used)", label))


def _label_folder_files(folder: Path, root: Path, skipped: list[SkippedFile]) -> list[Path]:
    """Image files under a label folder; symlinked folders are not followed (no loops, no escapes), hidden and
    operating-system folders are not read, and side files are listed as skipped."""
    label = folder.name
    files = []
    for current, directories, names in os.walk(folder, followlinks=False):
        current_path = Path(current)
        for name in sorted(directories):
            path = current_path / name
            if path.is_symlink():
                directories.remove(name)
                relative = path.relative_to(root).as_posix()
                skipped.append(
                    SkippedFile(relative, "symlinked folder not followed; copy its files into the dataset", label)
                )
            elif reason := folder_skip_reason(name):
                directories.remove(name)
                _skip_folder(path, root, label, reason, skipped)
        directories.sort()
        for name in sorted(names):
            path = current_path / name
            # In this order: nothing outside the root is ever opened, not even to look at its header.
            reason = path.is_symlink() and _outside_root(path, root)
            reason = reason or ("" if path.is_file() else "not a regular file") or file_skip_reason(path)
            if reason:
                skipped.append(SkippedFile(path.relative_to(root).as_posix(), reason, label))
            else:
                files.append(path)
    return files


def scan_dataset(root: str | os.PathLike[str], hash_cache: FileHashCache | None = None) -> DatasetManifest:
    """Read a `<root>/<label>/<file>` folder into a manifest; entries that are not images of the dataset are listed
    as skipped with their reason (`dataset_files` decides which files are images)."""
    root_path = Path(root).expanduser().resolve()
    if not root_path.is_dir():
        raise DatasetError(
            f"Dataset folder {root_path} does not exist. Pass a folder laid out as <root>/<label>/<image file>."
        )
    entries: list[ManifestEntry] = []
    skipped: list[SkippedFile] = []
    label_folders: list[str] = []
    for child in sorted(root_path.iterdir()):
        if child.is_symlink() and (reason := _outside_root(child, root_path) or "symlinked label folder not followed"):
            skipped.append(SkippedFile(child.name, reason))
            continue
        if child.is_file():
            reason = side_file_reason(child) or "file directly under the dataset root has no label folder"
            skipped.append(SkippedFile(child.name, reason))
            continue
        if not child.is_dir():
            skipped.append(SkippedFile(child.name, "not a regular file or folder"))
            continue
        if reason := folder_skip_reason(child.name):
            _skip_folder(child, root_path, "", f"{reason}; not a label", skipped)
            continue
        label_folders.append(child.name)
        for path in _label_folder_files(child, root_path, skipped):
            relative = path.relative_to(root_path).as_posix()
            stat = path.stat()
            digest = hash_cache.sha256(path, stat) if hash_cache else file_sha256(path)
            entries.append(ManifestEntry(relative, child.name, stat.st_size, digest))
    skipped.sort(key=lambda item: item.path)
    if not entries:
        examples = "; ".join(f"{item.path}: {item.reason}" for item in skipped[:5])
        raise DatasetError(
            f"No images found under {root_path} ({len(label_folders)} label folder(s), {len(skipped)} "
            f"entries skipped{', e.g. ' + examples if examples else ''}). Expected <root>/<label>/<image file> "
            "(PNG, JPEG, WebP, BMP, TIFF or GIF)."
        )
    if hash_cache is not None:
        hash_cache.save()
    return DatasetManifest(str(root_path), tuple(entries), tuple(skipped), tuple(label_folders))
