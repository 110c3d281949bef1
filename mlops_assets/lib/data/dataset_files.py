"""Which entries of a dataset folder are image files, and why the others are skipped.

The rule, in order (README, "Datasets"):

1. Operating-system and editor side files, by name: `Thumbs.db`, `desktop.ini`, `.DS_Store`, AppleDouble `._*`
   copies, `~$*` and `*~` backups, `*:Zone.Identifier` download markers, ... and hidden files (leading dot).
2. Sidecar metadata, documents, camera raw originals and videos, by suffix: `.xmp`, `.aae`, `.json`, `.txt`, ...
3. A suffix that names an image format (`.png`, `.jpg`, `.webp`, `.heic`, ...): an image file. It is decoded, and
   refused with its reason (quarantined) if it is not an image the policy accepts.
4. Any other suffix, or none: an image file if Pillow recognises its first bytes as an image (cheap: the header
   only), otherwise skipped.

Skipped entries are listed with their reason and never counted as images. Folders: hidden ones (leading dot, e.g.
`.hidden`, `...`) and operating-system ones (`__MACOSX`, `@eaDir`, ...) are skipped and listed, never labels.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from mlops_assets.lib.data.pillow_warnings import pillow_warnings

_SIDE_FILES = {
    "thumbs.db": "Windows thumbnail cache",
    "ehthumbs.db": "Windows thumbnail cache",
    "ehthumbs_vista.db": "Windows thumbnail cache",
    "desktop.ini": "Windows folder settings",
    ".ds_store": "macOS Finder settings",
    "icon\r": "macOS folder icon",
    ".localized": "macOS folder name",
    ".picasa.ini": "Picasa settings",
    "picasa.ini": "Picasa settings",
    ".directory": "KDE folder settings",
    ".bridgesort": "Adobe Bridge settings",
    "zbthumbnail.info": "Zoner thumbnail cache",
}
_SIDE_FOLDERS = {
    "__macosx": "macOS archive metadata",
    "@eadir": "Synology thumbnails",
    "$recycle.bin": "Windows recycle bin",
    "system volume information": "Windows system folder",
}
# Not images, whatever their bytes: metadata written next to photos, notes and documents, raw originals (trained
# on through their JPEG/PNG/TIFF export) and videos (e.g. the movie half of a live photo).
_NOT_IMAGE_KINDS = {
    "sidecar metadata": ".xmp .aae .json .xml .thm .pp3 .dop .cos .on1 .arp",
    "notes or document": ".txt .md .rtf .csv .tsv .yaml .yml .ini .cfg .log .html .htm .pdf .doc .docx .odt .xlsx",
    "shortcut or database": ".url .lnk .webloc .db .sqlite",
    "temporary or backup file": ".tmp .part .crdownload .download .swp .swo .bak",
    "camera raw original (use its JPEG, PNG or TIFF export)": ".dng .cr2 .cr3 .nef .nrw .arw .raf .orf .rw2 .pef .srw",
    "video": ".mov .mp4 .m4v .avi .mkv .3gp .lrv .mts .webm",
}
_NOT_IMAGE_SUFFIXES = {suffix: kind for kind, suffixes in _NOT_IMAGE_KINDS.items() for suffix in suffixes.split()}
# Suffixes of image formats, decodable or not: such a file is an image the user meant as data, so when it cannot be
# used it is quarantined with its reason (and counted), not skipped.
_IMAGE_SUFFIX_LIST = (
    ".png .apng .jpg .jpeg .jpe .jfif .jif .webp .bmp .dib .tif .tiff .gif .heic .heif .avif .jxl .ico .psd"
)
IMAGE_SUFFIXES = frozenset(_IMAGE_SUFFIX_LIST.split())


def folder_skip_reason(name: str) -> str:
    """Why a folder is not read (hidden or an operating-system folder), or '' when it is."""
    if name.lower() in _SIDE_FOLDERS:
        return f"{_SIDE_FOLDERS[name.lower()]} folder ({name}), not read"
    if name.startswith("."):
        return "hidden folder (its name starts with '.'), not read; rename it without the dot to use its files"
    return ""


def file_skip_reason(path: Path) -> str:
    """Why a file is not an image file (see the module's rule), or '' when it is one. Only a file with an unknown
    suffix is opened, and only its header is read."""
    if reason := side_file_reason(path):
        return reason
    if path.suffix.lower() in IMAGE_SUFFIXES or _pillow_recognises(path):
        return ""
    return (
        f"suffix {path.suffix or '(none)'} is not an image type and Pillow does not recognise the content as an image"
    )


def side_file_reason(path: Path) -> str:
    """Why a file is a side file, sidecar or other non-image by its name alone (rules 1 and 2), or ''."""
    name = path.name
    lower = name.lower()
    if lower in _SIDE_FILES:
        return f"operating-system side file ({_SIDE_FILES[lower]}): not an image"
    if name.startswith("._"):
        return "macOS AppleDouble side file (resource fork of the file without '._'): not an image"
    if name.startswith("."):
        return "hidden file (its name starts with '.'), not read"
    if lower.endswith(":zone.identifier"):
        return "Windows download marker (Zone.Identifier): not an image"
    if name.startswith("~$") or name.endswith("~") or (name.startswith("#") and name.endswith("#")):
        return "editor lock or backup file: not an image"
    suffix = path.suffix.lower()
    if suffix in _NOT_IMAGE_SUFFIXES:
        return f"{_NOT_IMAGE_SUFFIXES[suffix]} ({suffix}): not an image type"
    return ""


def _pillow_recognises(path: Path) -> bool:
    # Pillow's warnings about damage are ignored here on purpose: this only tells image files from others; the image
    # policy reads the file again and refuses it with them as the reason.
    with pillow_warnings():
        try:
            with Image.open(path):
                return True
        except Exception:  # noqa: BLE001 - anything Pillow cannot open is simply not an image file
            return False
