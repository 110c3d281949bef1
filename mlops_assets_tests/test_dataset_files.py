"""Which entries of a dataset folder are images: side files, sidecars, hidden and system folders are skipped and
listed with their label and reason, never read as images or dropped silently; empty label folders are recorded."""

from pathlib import Path

import pytest
from PIL import Image

from mlops_assets.lib.data.dataset_files import file_skip_reason
from mlops_assets.lib.data.manifest import SkippedFile, scan_dataset
from mlops_assets.lib.errors import DatasetError
from mlops_assets_tests import image_inputs as inputs

PNG = inputs.encode(Image.fromarray(inputs.noise(0, (8, 8))), "PNG")

SIDE_FILES = {
    "Thumbs.db": "operating-system side file (Windows thumbnail cache): not an image",
    "desktop.ini": "operating-system side file (Windows folder settings): not an image",
    ".DS_Store": "operating-system side file (macOS Finder settings): not an image",
    "._IMG_1.jpg": "macOS AppleDouble side file (resource fork of the file without '._'): not an image",
    "IMG_1.xmp": "sidecar metadata (.xmp): not an image type",
    "IMG_1.aae": "sidecar metadata (.aae): not an image type",
    "IMG_1.json": "sidecar metadata (.json): not an image type",
    "notes.txt": "notes or document (.txt): not an image type",
    "IMG_1.NEF": "camera raw original (use its JPEG, PNG or TIFF export) (.nef): not an image type",
    "IMG_1.MOV": "video (.mov): not an image type",
    "IMG_1.jpg:Zone.Identifier": "Windows download marker (Zone.Identifier): not an image",
    "~$report.docx": "editor lock or backup file: not an image",
    ".hidden.png": "hidden file (its name starts with '.'), not read",
    "notes": "suffix (none) is not an image type and Pillow does not recognise the content as an image",
}


@pytest.mark.parametrize("name", list(SIDE_FILES))
def test_side_files_are_skipped_by_name_whatever_their_content(tmp_path: Path, name: str) -> None:
    # Even with image bytes inside (a sidecar or a hidden copy is still not a dataset image), except the last case,
    # which is decided by its content.
    path = inputs.write(tmp_path / name, b"plain notes" if name == "notes" else PNG)
    assert file_skip_reason(path) == SIDE_FILES[name]


def test_images_are_recognised_by_suffix_or_by_content(tmp_path: Path) -> None:
    assert file_skip_reason(inputs.write(tmp_path / "IMG_1.JPG", b"not really a jpeg")) == ""  # quarantined later
    assert file_skip_reason(inputs.write(tmp_path / "IMG_2.heic", b"\x00" * 16)) == ""  # an image, refused later
    assert file_skip_reason(inputs.write(tmp_path / "scan_0001", PNG)) == ""  # no suffix, PNG bytes
    assert file_skip_reason(inputs.write(tmp_path / "frame.dat", PNG)) == ""  # unknown suffix, PNG bytes
    assert file_skip_reason(inputs.write(tmp_path / "frame2.dat", b"\x01\x02")) == (
        "suffix .dat is not an image type and Pillow does not recognise the content as an image"
    )


def test_scan_lists_every_skipped_entry_with_its_label_and_never_drops_one(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for label in ("dark", "bright"):
        for index in range(3):
            inputs.write(root / label / f"{index}.png", PNG)
    for name in ("Thumbs.db", "desktop.ini", ".DS_Store", "._0.png", "0.xmp", "0.aae", "0.json", "notes.txt"):
        inputs.write(root / "dark" / name, PNG)
    inputs.write(root / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    # Hidden folders holding images: at the root (would-be labels) and inside a label.
    for folder in (".hidden", "...", "__MACOSX"):
        for index in range(2):
            inputs.write(root / folder / f"{index}.png", PNG)
    inputs.write(root / "bright" / ".thumbnails" / "0.png", PNG)
    inputs.write(root / "bright" / "@eaDir" / "0.png" / "SYNOFILE_THUMB_M.jpg", PNG)
    (root / "cat").mkdir()

    manifest = scan_dataset(root)
    assert [entry.path for entry in manifest.entries] == [
        f"{label}/{i}.png" for label in ("bright", "dark") for i in range(3)
    ]
    hidden = "hidden folder (its name starts with '.'), not read; rename it without the dot to use its files"
    macos = "macOS archive metadata folder (__MACOSX), not read"
    synology = "Synology thumbnails folder (@eaDir), not read"
    assert manifest.skipped == (
        SkippedFile(".../", f"{hidden}; not a label (2 file(s) in it are not used)", ""),
        SkippedFile(".DS_Store", SIDE_FILES[".DS_Store"], ""),
        SkippedFile(".hidden/", f"{hidden}; not a label (2 file(s) in it are not used)", ""),
        SkippedFile("__MACOSX/", f"{macos}; not a label (2 file(s) in it are not used)", ""),
        SkippedFile("bright/.thumbnails/", f"{hidden} (1 file(s) in it are not used)", "bright"),
        SkippedFile("bright/@eaDir/", f"{synology} (1 file(s) in it are not used)", "bright"),
        SkippedFile("dark/.DS_Store", SIDE_FILES[".DS_Store"], "dark"),
        SkippedFile("dark/._0.png", SIDE_FILES["._IMG_1.jpg"], "dark"),
        SkippedFile("dark/0.aae", SIDE_FILES["IMG_1.aae"], "dark"),
        SkippedFile("dark/0.json", SIDE_FILES["IMG_1.json"], "dark"),
        SkippedFile("dark/0.xmp", SIDE_FILES["IMG_1.xmp"], "dark"),
        SkippedFile("dark/Thumbs.db", SIDE_FILES["Thumbs.db"], "dark"),
        SkippedFile("dark/desktop.ini", SIDE_FILES["desktop.ini"], "dark"),
        SkippedFile("dark/notes.txt", SIDE_FILES["notes.txt"], "dark"),
    )
    assert manifest.label_folders == ("bright", "cat", "dark")
    assert manifest.labels == ("bright", "dark")
    assert manifest.empty_labels == ("cat",)


def test_an_empty_label_folder_changes_the_data_version_and_side_files_do_not(tmp_path: Path) -> None:
    root = inputs.two_label_dataset(tmp_path / "data", count=3, size=(8, 8))
    before = scan_dataset(root).data_version
    inputs.write(root / "dark" / "Thumbs.db", b"\xd0\xcf\x11\xe0")
    assert scan_dataset(root).data_version == before
    (root / "cat").mkdir()
    with_empty = scan_dataset(root)
    assert with_empty.data_version != before
    inputs.write(root / "cat" / "desktop.ini", b"[.ShellClassInfo]")
    assert scan_dataset(root).empty_labels == ("cat",)
    assert scan_dataset(root).data_version == with_empty.data_version


def test_a_folder_of_side_files_only_is_a_clear_error_with_examples(tmp_path: Path) -> None:
    for label in ("dark", "bright"):
        inputs.write(tmp_path / "data" / label / "Thumbs.db", b"\xd0\xcf\x11\xe0")
        inputs.write(tmp_path / "data" / label / "IMG_1.xmp", b"<x:xmpmeta/>")
    with pytest.raises(DatasetError) as raised:
        scan_dataset(tmp_path / "data")
    assert str(raised.value) == (
        f"No images found under {(tmp_path / 'data').resolve()} (2 label folder(s), 4 entries skipped, e.g. "
        f"bright/IMG_1.xmp: {SIDE_FILES['IMG_1.xmp']}; bright/Thumbs.db: {SIDE_FILES['Thumbs.db']}; "
        f"dark/IMG_1.xmp: {SIDE_FILES['IMG_1.xmp']}; dark/Thumbs.db: {SIDE_FILES['Thumbs.db']}). "
        "Expected <root>/<label>/<image file> (PNG, JPEG, WebP, BMP, TIFF or GIF)."
    )


def test_nothing_outside_the_root_is_opened_to_decide_what_it_is(tmp_path: Path) -> None:
    outside = inputs.write(tmp_path / "elsewhere" / "secret.dat", PNG)
    root = inputs.two_label_dataset(tmp_path / "data", count=2, size=(8, 8))
    (root / "dark" / "link.dat").symlink_to(outside)
    manifest = scan_dataset(root)
    reasons = {item.path: item.reason for item in manifest.skipped}
    assert reasons["dark/link.dat"].startswith("symlink points outside the dataset root (to ")
    assert "dark/link.dat" not in {entry.path for entry in manifest.entries}
