"""The image policy: every accepted format and mode becomes the same model input, the displayed size comes from the
EXIF orientation (from the header alone), big JPEGs decode small, and every damaged file is a refusal with a reason."""

import io
import random
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from mlops_assets.lib.data.expectation_profiles import ExpectationProfile, load_profile
from mlops_assets.lib.data.image_policy import ImageHeader, ImagePolicy, exif_problem
from mlops_assets.lib.errors import DatasetError, InvalidImageError
from mlops_assets.lib.models.model_package import package_policy
from mlops_assets_tests import image_inputs as inputs

POLICY = ImagePolicy()


@pytest.fixture(scope="session")
def camera_photo() -> bytes:
    """A 24-megapixel JPEG (6000x4000), as a camera writes it."""
    return inputs.large_photo(seed=0)


def _pixels(data: bytes, height: int, width: int, channels: int = 3, policy: ImagePolicy = POLICY) -> np.ndarray:
    array, _ = policy.model_input(data, height, width, channels)
    return array


def _refusal(data: bytes, height: int = 8, width: int = 8, policy: ImagePolicy = POLICY) -> str:
    with pytest.raises(InvalidImageError) as raised:
        policy.model_input(data, height, width, 3)
    return str(raised.value)


RGB = inputs.noise(1, (12, 16, 3))
GREY = inputs.noise(2, (12, 16))
LOSSLESS = {
    "WEBP": inputs.encode(Image.fromarray(RGB), "WEBP", lossless=True),
    "BMP": inputs.encode(Image.fromarray(RGB), "BMP"),
    "TIFF": inputs.encode(Image.fromarray(RGB), "TIFF", compression="tiff_deflate"),
    "GIF": inputs.encode(Image.fromarray(GREY), "GIF"),
}


@pytest.mark.parametrize("file_format", list(LOSSLESS))
def test_every_accepted_format_gives_the_png_model_input(file_format: str) -> None:
    reference = inputs.encode(Image.fromarray(GREY if file_format == "GIF" else RGB), "PNG")
    np.testing.assert_array_equal(_pixels(LOSSLESS[file_format], 6, 8), _pixels(reference, 6, 8))
    assert POLICY.header(LOSSLESS[file_format]) == ImageHeader(
        file_format, "P" if file_format == "GIF" else "RGB", 16, 12
    )


def test_an_animation_counts_by_its_first_frame() -> None:
    frames = [inputs.noise(seed, (12, 16)) for seed in (3, 4, 5)]
    first = inputs.encode(Image.fromarray(frames[0]), "PNG")
    np.testing.assert_array_equal(_pixels(inputs.animated_gif(frames), 12, 16, 1), _pixels(first, 12, 16, 1))
    assert not np.array_equal(_pixels(inputs.animated_gif(frames[1:]), 12, 16, 1), _pixels(first, 12, 16, 1))


def test_a_multi_frame_jpeg_is_a_jpeg_and_its_first_frame_is_the_photo() -> None:
    data = inputs.mpo([RGB, RGB[::-1]])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert POLICY.header(data) == ImageHeader("JPEG", "RGB", 16, 12)
    single = inputs.encode(Image.fromarray(RGB), "JPEG", quality=95)
    np.testing.assert_array_equal(_pixels(data, 12, 16), _pixels(single, 12, 16))
    # A profile that accepts JPEG accepts it; one without JPEG refuses it by that name.
    assert "image format JPEG is not in the profile's allowed_formats ['PNG']" in _refusal(
        data, policy=ImagePolicy(allowed_formats=("PNG",))
    )


def test_colour_modes_convert_explicitly() -> None:
    # CMYK: Pillow's conversion to RGB.
    cmyk = inputs.cmyk_jpeg(RGB)
    decoded = np.asarray(Image.open(io.BytesIO(cmyk)).convert("RGB")).transpose(2, 0, 1)
    np.testing.assert_array_equal(_pixels(cmyk, 12, 16), decoded)
    # 16-bit greyscale: linear onto 0..255 (Pillow's own conversion would clip everything above 255 to white).
    values = (np.arange(12 * 16).reshape(12, 16) * 300).astype(np.uint16)
    np.testing.assert_array_equal(_pixels(inputs.sixteen_bit_png(values), 12, 16, 1)[0], values // 257)
    # A palette with a transparent entry: composited over white, never the hidden black.
    indices = np.tile(np.arange(16), (12, 1)) * 10
    flattened = _pixels(inputs.palette_png_with_transparency(indices), 12, 16, 1)[0]
    np.testing.assert_array_equal(flattened[:, 0], np.full(12, 255))
    np.testing.assert_array_equal(flattened[:, 1:], indices[:, 1:])
    # Greyscale with alpha: composited the same way.
    alpha = np.stack([GREY, np.where(np.arange(16) < 8, 0, 255)[None, :].repeat(12, 0).astype(np.uint8)], axis=-1)
    composited = _pixels(inputs.encode(Image.fromarray(alpha, "LA"), "PNG"), 12, 16, 1)[0]
    np.testing.assert_array_equal(composited[:, :8], np.full((12, 8), 255))
    np.testing.assert_array_equal(composited[:, 8:], GREY[:, 8:])


def test_a_mode_without_conversion_is_refused_by_name() -> None:
    floating = inputs.encode(Image.fromarray(GREY.astype(np.float32), "F"), "TIFF")
    assert _refusal(floating).startswith("image mode F is not in the profile's allowed_modes ['1', 'L', 'LA',")
    with pytest.raises(ValueError, match=r"image modes \['F'\] have no conversion"):
        ImagePolicy(allowed_modes=("L", "F"))


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("file_format", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_the_displayed_size_and_pixels_follow_the_exif_orientation(file_format: str, orientation: int) -> None:
    stored = Image.fromarray(RGB)  # 16 wide, 12 high as stored
    options = {"quality": 95} if file_format == "JPEG" else {"lossless": True} if file_format == "WEBP" else {}
    data = inputs.encode(stored, file_format, exif=inputs.exif_orientation(orientation), **options)
    turned = orientation in (5, 6, 7, 8)
    width, height = (12, 16) if turned else (16, 12)
    assert POLICY.header(data) == ImageHeader(file_format, "RGB", width, height)
    # The reference: Pillow's own full decode turned upright by Pillow's own `exif_transpose`.
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(_pixels(data, height, width), np.asarray(upright).transpose(2, 0, 1))


def test_the_header_gives_the_displayed_size_without_decoding_pixels(tmp_path: Path, monkeypatch) -> None:
    path = inputs.write(
        tmp_path / "sideways.png", inputs.encode(Image.fromarray(RGB), "PNG", exif=inputs.exif_orientation(6))
    )
    jpeg = inputs.write(tmp_path / "sideways.jpg", inputs.sideways_jpeg(RGB))

    def no_decoding(self):
        raise AssertionError("the header pass decoded pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert POLICY.header(path) == ImageHeader("PNG", "RGB", 12, 16)
    assert POLICY.header(jpeg) == ImageHeader("JPEG", "RGB", 12, 16)


def test_a_camera_photo_decodes_at_a_fraction_of_its_size(camera_photo: bytes) -> None:
    assert POLICY.header(camera_photo) == ImageHeader("JPEG", "RGB", 6000, 4000)
    # Within a policy allowing only 1 Mpx decoded: the 24 Mpx JPEG decodes at 1/8 scale (750x500) for a small input
    # and is accepted, while decoding it whole is refused, as is a PNG that cannot be decoded smaller.
    small = ImagePolicy(max_pixels=1_000_000)
    pixels, header = small.model_input(camera_photo, 43, 64, 3)
    assert pixels.shape == (3, 43, 64) and header == ImageHeader("JPEG", "RGB", 6000, 4000)
    with pytest.raises(InvalidImageError, match=r"Image is 6000x4000, above the limit of 1,000,000 pixels"):
        small.decode(camera_photo)
    big_png = inputs.encode(Image.new("L", (1500, 1000)), "PNG")
    assert _refusal(big_png, 43, 64, small) == (
        "cannot be decoded: Image is 1500x1000, above the limit of 1,000,000 pixels; resize it first."
    )
    # The default policy takes it whole too (it is within 40 Mpx), and the small decode is close to the whole one.
    whole = np.asarray(POLICY.decode(camera_photo).resize((64, 43), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    assert np.abs(_pixels(camera_photo, 43, 64).astype(int) - whole.astype(int)).mean() < 3


@pytest.mark.parametrize(
    ("block", "reason"),
    [
        (inputs.truncated_exif_block(), "its directory claims 5 entries but the block ends first"),
        (inputs.exif_block_pointing_outside(), "tag 271 claims 40 bytes at offset 4000, past the end of the block"),
        (b"Exif\x00\x00XX*\x00\x08\x00\x00\x00", "no byte-order mark"),
        (b"Exif\x00\x00II*\x00\xff\xff\x00\x00", "its directory offset 65535 lies outside the 8-byte block"),
    ],
    ids=["truncated", "pointing-outside", "no-byte-order", "offset-outside"],
)
def test_a_damaged_exif_block_is_a_refusal_with_its_reason(block: bytes, reason: str) -> None:
    data = inputs.jpeg_with_exif_block(RGB, block)
    expected = f"cannot be decoded: its EXIF metadata block is damaged ({reason}); re-save the image without it"
    assert _refusal(data) == expected
    with pytest.raises(InvalidImageError) as raised:
        POLICY.header(data)
    assert str(raised.value) == expected
    assert exif_problem(inputs.exif_orientation(6).tobytes()) == ""


def test_an_invalid_exif_orientation_is_a_refusal() -> None:
    data = inputs.jpeg_with_exif_block(RGB, inputs.exif_block_with_bad_orientation(9))
    assert (
        _refusal(data) == "cannot be decoded: its EXIF Orientation is 9, not one of 1-8; re-save the image without it"
    )


def test_no_damage_anywhere_in_a_file_escapes_as_another_error() -> None:
    """Bytes flipped anywhere in a JPEG with EXIF (header, EXIF block, pixels): an image or a refusal, nothing else."""
    exif = inputs.exif_orientation(6)
    exif[0x010F] = "Camera"
    original = inputs.encode(Image.fromarray(RGB), "JPEG", exif=exif, quality=90)
    rng = random.Random(7)
    outcomes = {"accepted": 0, "refused": 0}
    for _ in range(300):
        damaged = bytearray(original)
        for _ in range(rng.randint(1, 6)):
            damaged[rng.randrange(2, 200 if rng.random() < 0.7 else len(damaged))] = rng.randrange(256)
        try:
            POLICY.model_input(bytes(damaged), 8, 8, 3)
            outcomes["accepted"] += 1
        except InvalidImageError as error:
            assert str(error), "a refusal always says why"
            outcomes["refused"] += 1
    assert outcomes["accepted"] + outcomes["refused"] == 300
    assert outcomes["refused"] > 0 and outcomes["accepted"] > 0


# Damage Pillow steps over with only a warning, and that warning (it becomes the reason).
PILLOW_WARNS = {
    "exif without its next-directory offset": (
        inputs.jpeg_with_exif_block(RGB, inputs.exif_block_without_next_pointer()),
        "Corrupt EXIF data. Expecting to read 4 bytes but only got 0.",
    ),
    "tiff tag past the end of the file": (
        inputs.tiff_with_tag_past_the_end(RGB),
        "Tag data larger than file. Skipping tag 270",
    ),
    "malformed multi-picture index": (
        inputs.jpeg_with_malformed_mpo_index(RGB),
        "Corrupt EXIF data. Expecting to read 12 bytes but only got 8.; Image appears to be a malformed MPO file, it "
        "will be interpreted as a base JPEG file",
    ),
}


def _pillow_reason(warning: str) -> str:
    return f"cannot be decoded: Pillow found it damaged ({warning}); re-save the image with an image editor"


@pytest.mark.parametrize("kind", list(PILLOW_WARNS))
def test_damage_pillow_only_warns_about_is_a_refusal_naming_it_and_nothing_is_printed(
    kind: str, capsys: pytest.CaptureFixture
) -> None:
    data, warning = PILLOW_WARNS[kind]
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        # Twice: a repeat is refused alike (a warning is not shown once and then dropped as already seen).
        for _ in range(2):
            assert _refusal(data) == _pillow_reason(warning)
            with pytest.raises(InvalidImageError) as header_refusal:
                POLICY.header(data)
            assert str(header_refusal.value) == _pillow_reason(warning)
    assert [str(item.message) for item in escaped] == []
    assert capsys.readouterr().err == ""


def test_files_read_in_many_threads_at_once_each_get_their_own_outcome(capsys: pytest.CaptureFixture) -> None:
    clean = inputs.encode(Image.fromarray(RGB), "PNG")
    damaged, warning = PILLOW_WARNS["tiff tag past the end of the file"]

    def outcome(index: int) -> str:
        try:
            POLICY.model_input(damaged if index % 2 else clean, 8, 8, 3)
        except InvalidImageError as error:
            return str(error)
        return "accepted"

    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(outcome, range(400)))
        # Other code's warnings still reach their handler, while files are read and after.
        warnings.warn("not about a file", UserWarning, stacklevel=1)
    assert outcomes == [_pillow_reason(warning) if index % 2 else "accepted" for index in range(400)]
    assert [str(item.message) for item in escaped] == ["not about a file"]
    assert capsys.readouterr().err == ""


def test_limits_are_checked_together_and_named() -> None:
    tiny = inputs.encode(Image.new("L", (1, 1)), "PNG")
    assert _refusal(tiny) == (
        "width 1 px is outside [4, 65535] px; height 1 px is outside [4, 65535] px; too small for the model: the image "
        "is 1x1 px and the model input is 8x8; send at least 4x4 px (min_side 4, at most 4x upscaling)"
    )
    # Within the sides but more than 4x smaller than the model input.
    assert _refusal(inputs.encode(Image.new("L", (5, 5)), "PNG"), 32, 32).startswith(
        "too small for the model: the image is 5x5 px and the model input is 32x32; send at least 8x8 px (at most"
    )
    limited = ImagePolicy(max_bytes=100)
    big = inputs.encode(Image.fromarray(RGB), "PNG")
    assert _refusal(big, policy=limited) == f"file size {len(big)} bytes is above the profile's max_bytes 100"
    assert _refusal(inputs.encode(Image.fromarray(RGB), "ICO")) == (
        "image format ICO is not in the profile's allowed_formats ['PNG', 'JPEG', 'WEBP', 'BMP', 'TIFF', 'GIF']"
    )
    assert _refusal(b"") == (
        "cannot be decoded: The image data is empty (0 bytes); send the bytes of an image file (PNG, JPEG, WebP, "
        "BMP, TIFF or GIF)."
    )


def test_the_policy_round_trips_through_a_package_and_comes_from_the_profile(tmp_path: Path) -> None:
    policy = load_profile("digits").image_policy()
    assert policy == ImagePolicy(
        allowed_formats=("PNG",), allowed_modes=("L",), min_side=8, max_side=8, max_pixels=64, max_bytes=10_000
    )
    assert ImagePolicy.from_dict(policy.to_dict()) == policy
    assert package_policy({"image_policy": policy.to_dict()}) == policy
    # Written before policies were recorded: the default policy.
    assert package_policy({}) == ImagePolicy() == ExpectationProfile().image_policy()
    assert load_profile("default").image_policy() == ImagePolicy()
    with pytest.raises(ValueError, match=r"unknown image policy settings \['max_sidez'\]"):
        ImagePolicy.from_dict({"max_sidez": 3})
    bad = tmp_path / "bad.yaml"
    bad.write_text("image_policy: {allowed_formats: [JPG]}\n")
    with pytest.raises(DatasetError, match=r"image policy that cannot work: image formats \['JPG'\] are not formats"):
        load_profile(str(bad))
