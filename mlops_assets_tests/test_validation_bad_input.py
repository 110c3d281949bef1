"""Each bad input from the data-validation issue: quarantined with its reason, or blocking with the stated reason."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlops_assets.lib.data.expectation_profiles import ExpectationProfile
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.preprocessing import normalize, preprocess_bytes
from mlops_assets.lib.data.validated_data import GeometryConfig, ValidatedDataset, build_validated_dataset
from mlops_assets_tests import image_inputs as inputs
from mlops_assets_tests.conftest import png_claiming_size, write_png


def _noise(seed: int, base: int, shape: tuple[int, ...] = (8, 8)) -> np.ndarray:
    return base + np.random.default_rng(seed).integers(-30, 30, shape)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for label, base in (("dark", 40), ("light", 200)):
        for index in range(30):
            write_png(root / label / f"{index}.png", _noise(index + base, base))
    return root


def _validate(root: Path, tmp_path: Path, profile: ExpectationProfile | None = None) -> ValidatedDataset:
    return build_validated_dataset(scan_dataset(root), GeometryConfig(), tmp_path / "validated", profile=profile)


def _reasons(validated: ValidatedDataset) -> dict[str, str]:
    return dict(zip(validated.quarantine()["path"], validated.quarantine()["reason"], strict=True))


def _truncated_png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40)).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()[:300]


def _cmyk_jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_noise(3, 120, (8, 8, 3)).astype(np.uint8), "RGB").convert("CMYK").save(path, format="JPEG")


BAD_FILES = {
    "dark/empty.png": (
        lambda path: path.write_bytes(b""),
        "cannot be decoded: The image data is empty (0 bytes); send the bytes of an image file (PNG, JPEG, WebP, "
        "BMP, TIFF or GIF).; "
        "file size 0 bytes is outside [1, 20000000]",
    ),
    "dark/truncated.png": (
        lambda path: path.write_bytes(_truncated_png()),
        "cannot be decoded: The image is damaged or truncated and cannot be decoded",
    ),
    "light/notes.png": (
        lambda path: path.write_text("a text file wearing a .png suffix"),
        "cannot be decoded: The bytes are not a recognised image; send an image file (PNG, JPEG, WebP, BMP, TIFF or "
        "GIF).",
    ),
    "light/float.tif": (
        lambda path: Image.fromarray(_noise(3, 120).astype(np.float32), mode="F").save(path, format="TIFF"),
        "image mode F is not in the profile's allowed_modes ['1', 'L', 'LA', 'La', 'P', 'PA', 'RGB', 'RGBA',",
    ),
    "dark/wide.png": (
        lambda path: write_png(path, _noise(4, 90, (8, 70_000))),
        "width 70000 px is outside [4, 65535] px",
    ),
    "dark/bomb.png": (
        lambda path: path.write_bytes(png_claiming_size(8_000, 8_000)),
        "cannot be decoded: Image is 8000x8000, above the limit of 40,000,000 pixels; resize it first.",
    ),
    "light/blank.png": (
        lambda path: write_png(path, np.full((8, 8), 128)),
        "blank or constant image (contrast 0.0000 below min_contrast 0.01)",
    ),
}


@pytest.mark.parametrize("relative", list(BAD_FILES), ids=[Path(name).stem for name in BAD_FILES])
def test_bad_file_is_quarantined_with_its_reason_and_not_trained_on(
    dataset: Path, tmp_path: Path, relative: str
) -> None:
    make, reason = BAD_FILES[relative]
    make(dataset / relative)
    validated = _validate(dataset, tmp_path)
    reasons = _reasons(validated)
    assert list(reasons) == [relative]
    assert reasons[relative].startswith(reason), reasons[relative]
    stats = validated.statistics().set_index("path")
    assert stats.loc[relative, "quarantine_reason"] == reasons[relative]
    assert sum(validated.split_counts.values()) == 60  # only the clean images are in the arrays
    quarantine = {o.role: o for o in validated.outcomes()}["quarantine"]
    assert quarantine.passed  # one file in 61 is within the default 5%
    assert quarantine.details == [{"path": relative, "reason": reasons[relative]}]


def test_file_directly_under_the_root_and_outside_symlink_are_reported(dataset: Path, tmp_path: Path) -> None:
    write_png(dataset / "stray.png", _noise(5, 100))
    secret = write_png(tmp_path / "outside" / "secret.png", _noise(6, 100))
    (dataset / "dark" / "link.png").symlink_to(secret)
    (dataset / "linked_label").symlink_to(secret.parent, target_is_directory=True)
    reasons = _reasons(_validate(dataset, tmp_path))
    assert reasons["stray.png"] == "file directly under the dataset root has no label folder"
    assert reasons["dark/link.png"].startswith("symlink points outside the dataset root (to ")
    assert reasons["linked_label"].startswith("symlink points outside the dataset root (to ")
    assert len(reasons) == 3


def test_non_ascii_and_space_names_are_accepted(dataset: Path, tmp_path: Path) -> None:
    names = ["dark/ünïcödé näme.png", "light/日本 語 1.png", "light/with  two spaces.png"]
    for seed, name in enumerate(names):
        write_png(dataset / name, _noise(seed + 900, 40 if name.startswith("dark") else 200))
    validated = _validate(dataset, tmp_path)
    assert _reasons(validated) == {}
    stats = validated.statistics().set_index("path")
    assert all(stats.loc[name, "quarantine_reason"] == "" for name in names)
    assert sum(validated.split_counts.values()) == 63


def test_explicit_mode_conversions_are_shared_by_training_and_serving(dataset: Path, tmp_path: Path) -> None:
    sixteen = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    (dataset / "dark").mkdir(exist_ok=True)
    Image.fromarray(sixteen).save(dataset / "dark" / "sixteen.png")
    palette = Image.frombytes("P", (8, 8), np.tile(np.arange(8, dtype=np.uint8), (8, 1)).tobytes())
    palette.putpalette([value for index in range(256) for value in (index * 30 % 256,) * 3])
    palette.save(dataset / "light" / "palette.png", transparency=0)  # palette entry 0 is transparent
    _cmyk_jpeg(dataset / "light" / "cmyk.jpg")
    profile = ExpectationProfile(allowed_modes=("L", "P", "I;16", "CMYK"))
    validated = build_validated_dataset(
        scan_dataset(dataset), GeometryConfig(channels=1), tmp_path / "validated", profile=profile
    )
    assert _reasons(validated) == {}
    stats = validated.statistics().set_index("path")
    assert {stats.loc[path, "mode"] for path in ("dark/sixteen.png", "light/palette.png", "light/cmyk.jpg")} == {
        "I;16",
        "P",
        "CMYK",
    }
    spec = validated.image_spec
    served = preprocess_bytes((dataset / "dark" / "sixteen.png").read_bytes(), spec)
    # 16-bit values map linearly onto 0..255 (v // 257) instead of Pillow's clipping to white.
    expected = (sixteen.astype(np.int64) // 257).astype(np.float32) / 255.0
    np.testing.assert_allclose(served[0], (expected - spec.mean[0]) / spec.std[0], rtol=1e-5, atol=1e-5)
    palette_input = preprocess_bytes((dataset / "light" / "palette.png").read_bytes(), spec)
    transparent_column = palette_input[0, :, 0] * spec.std[0] + spec.mean[0]
    np.testing.assert_allclose(transparent_column, 1.0, atol=1e-6)  # composited over white
    for split in ("train", "val", "test"):
        data = validated.load_split(split)
        paths = [path for path in stats.index if stats.loc[path, "split"] == split]
        served_split = np.stack([preprocess_bytes((dataset / path).read_bytes(), spec) for path in paths])
        np.testing.assert_array_equal(normalize(data.images, spec), served_split)


def test_damage_pillow_only_warns_about_is_quarantined_with_it_and_never_printed(
    dataset: Path, tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    pixels = inputs.noise(7, (32, 32, 3), base=60, spread=40)
    damaged = {
        "dark/IMG_1.jpg": inputs.jpeg_with_exif_block(pixels, inputs.exif_block_without_next_pointer()),
        "dark/scan.tif": inputs.tiff_with_tag_past_the_end(pixels),
        "dark/DSC_2.jpg": inputs.jpeg_with_malformed_mpo_index(pixels),
    }
    for path, data in damaged.items():
        inputs.write(dataset / path, data)
    assert _reasons(_validate(dataset, tmp_path)) == {
        "dark/IMG_1.jpg": "cannot be decoded: Pillow found it damaged (Corrupt EXIF data. Expecting to read 4 bytes "
        "but only got 0.); re-save the image with an image editor",
        "dark/scan.tif": "cannot be decoded: Pillow found it damaged (Tag data larger than file. Skipping tag 270); "
        "re-save the image with an image editor",
        "dark/DSC_2.jpg": "cannot be decoded: Pillow found it damaged (Corrupt EXIF data. Expecting to read 12 bytes "
        "but only got 8.; Image appears to be a malformed MPO file, it will be interpreted as a base JPEG file); "
        "re-save the image with an image editor",
    }
    # Python prints a warning as "<file>:<line>: UserWarning: <message>"; none reached the console, from this process
    # or from the processes that read the files.
    assert "Warning: " not in capfd.readouterr().err
