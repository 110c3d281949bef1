"""Dataset manifests of object storage: `<label>/<file>` object names read with the same rules as a folder.

An object store has names, not folders: `dark/01.png` lies in the folder `dark`, and an empty object whose name ends
in `/` (`empty/`) is a folder with nothing in it, as cloud consoles create them. The walk below visits those names
in the order `manifest.scan_dataset` visits a folder (files of a folder before its subfolders, each sorted), and asks
`dataset_files` the same questions, so the same files give the same manifest and data version wherever they lie.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol

from mlops_assets.lib.data.dataset_files import IMAGE_SUFFIXES, file_skip_reason, folder_skip_reason, side_file_reason
from mlops_assets.lib.data.manifest import DatasetManifest, ManifestEntry, SkippedFile
from mlops_assets.lib.errors import DatasetError

NO_LABEL = "file directly under the dataset root has no label folder"
BAD_NAME = "object name has an empty, '.' or '..' part, which no folder can hold; rename the object"
FILE_AND_FOLDER = "object name is also the folder of other objects, which no folder can hold; rename one of them"


@dataclass(frozen=True)
class StoredObject:
    """One object below the dataset root: its name relative to the root ('/'-separated), size in bytes, and the
    generation that identifies its current content (a new upload gets a new one)."""

    name: str
    size: int
    generation: str


class ObjectContent(Protocol):
    """What the walk needs of the objects' content: the hashes of the image files (all at once, so they can be
    fetched in parallel), and a local copy of the few files whose suffix does not say whether they are images (only
    their header is read)."""

    def sha256s(self, objects: list[StoredObject]) -> list[str]: ...

    def local_file(self, stored: StoredObject) -> Path: ...


@dataclass
class _Folder:
    files: dict[str, StoredObject] = field(default_factory=dict)
    folders: dict[str, _Folder] = field(default_factory=dict)

    def folder(self, name: str) -> _Folder:
        return self.folders.setdefault(name, _Folder())

    def file_count(self) -> int:
        return len(self.files) + sum(child.file_count() for child in self.folders.values())


def _tree(objects: Iterable[StoredObject], skipped: list[SkippedFile]) -> _Folder:
    root = _Folder()
    for stored in objects:
        if not stored.name:
            continue  # the root's own folder placeholder
        parts = stored.name.split("/")
        is_placeholder = parts[-1] == ""
        folders = parts[:-1]
        if any(part in ("", ".", "..") for part in folders) or parts[-1] in (".", ".."):
            skipped.append(SkippedFile(stored.name, BAD_NAME, folders[0] if len(folders) > 1 else ""))
            continue
        folder = root
        for part in folders:
            folder = folder.folder(part)
        if not is_placeholder:
            folder.files[parts[-1]] = stored
    return root


def _skip_folder(folder: _Folder, path: str, label: str, reason: str, skipped: list[SkippedFile]) -> None:
    skipped.append(SkippedFile(f"{path}/", f"{reason} ({folder.file_count()} file(s) in it are not used)", label))


def _file_reason(stored: StoredObject, content: ObjectContent) -> str:
    """dataset_files' rule: by name first; only a file with a suffix that names no image type is opened."""
    pure = PurePosixPath(stored.name)
    reason = side_file_reason(pure)
    if reason or pure.suffix.lower() in IMAGE_SUFFIXES:
        return reason
    return file_skip_reason(content.local_file(stored))


def _label_files(
    folder: _Folder, path: str, label: str, content: ObjectContent, skipped: list[SkippedFile]
) -> list[StoredObject]:
    """The image files below a label folder, in `os.walk` order (a folder's files, then each subfolder, sorted)."""
    files: list[StoredObject] = []
    for name in sorted(folder.files):
        stored = folder.files[name]
        if name in folder.folders:
            skipped.append(SkippedFile(stored.name, FILE_AND_FOLDER, label))
        elif reason := _file_reason(stored, content):
            skipped.append(SkippedFile(stored.name, reason, label))
        else:
            files.append(stored)
    for name in sorted(folder.folders):
        child, child_path = folder.folders[name], f"{path}/{name}"
        if reason := folder_skip_reason(name):
            _skip_folder(child, child_path, label, reason, skipped)
        else:
            files += _label_files(child, child_path, label, content, skipped)
    return files


def scan_objects(root: str, objects: Iterable[StoredObject], content: ObjectContent) -> DatasetManifest:
    """The manifest of the objects below `root` (a URL such as gs://bucket/prefix), as `scan_dataset` gives for the
    same files in a folder; entries that are not images of the dataset are listed as skipped with their reason.
    Raises DatasetError when no image file is found."""
    skipped: list[SkippedFile] = []
    tree = _tree(objects, skipped)
    found: list[tuple[StoredObject, str]] = []
    label_folders: list[str] = []
    for name in sorted(set(tree.files) | set(tree.folders)):
        if name in tree.files:
            reason = FILE_AND_FOLDER if name in tree.folders else side_file_reason(PurePosixPath(name)) or NO_LABEL
            skipped.append(SkippedFile(name, reason))
        if name not in tree.folders:
            continue
        folder = tree.folders[name]
        if reason := folder_skip_reason(name):
            _skip_folder(folder, name, "", f"{reason}; not a label", skipped)
            continue
        label_folders.append(name)
        found += [(stored, name) for stored in _label_files(folder, name, name, content, skipped)]
    digests = content.sha256s([stored for stored, _ in found])
    entries = [
        ManifestEntry(stored.name, label, stored.size, digest)
        for (stored, label), digest in zip(found, digests, strict=True)
    ]
    skipped.sort(key=lambda item: item.path)
    if not entries:
        examples = "; ".join(f"{item.path}: {item.reason}" for item in skipped[:5])
        raise DatasetError(
            f"No images found under {root} ({len(label_folders)} label folder(s), {len(skipped)} entries skipped"
            f"{', e.g. ' + examples if examples else ''}). Expected <root>/<label>/<image file> (PNG, JPEG, WebP, "
            "BMP, TIFF or GIF)."
        )
    return DatasetManifest(root, tuple(entries), tuple(skipped), tuple(label_folders))
