"""The served model takes and refuses uploads exactly as its training did: the image policy recorded in its package.

Every accepted kind of file (other formats, an animation, colour modes, rotated photos, a 24-megapixel photo) gets the
answer of a plain PNG holding the model input the policy makes of it; every refused kind gets a 400 whose message is
training's quarantine reason for the same bytes.
"""

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from mlops_assets import settings
from mlops_assets.lib.data.image_policy import ImagePolicy
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets.lib.models.model_package import package_policy, read_package_document
from mlops_assets_tests import image_inputs as inputs
from mlops_assets_tests.conftest import png_claiming_size
from mlops_assets_tests.service_fixtures import ServedBento

pytestmark = pytest.mark.e2e
# The served model: the digits sample, validated under the default profile, so 8x8 greyscale inputs.
HEIGHT, WIDTH, CHANNELS = 8, 8, 1
DIGIT = np.kron(np.eye(4, dtype=np.uint8) * 180 + 40, np.ones((3, 4), dtype=np.uint8))  # 12 high x 16 wide
PORTRAIT = np.ascontiguousarray(np.rot90(np.tile(DIGIT[..., None], (1, 1, 3))))  # 16 high x 12 wide, upright

ACCEPTED = {
    "webp": inputs.encode(Image.fromarray(DIGIT), "WEBP", lossless=True),
    "bmp": inputs.encode(Image.fromarray(DIGIT), "BMP"),
    "tiff": inputs.encode(Image.fromarray(DIGIT), "TIFF", compression="tiff_lzw"),
    "gif animation": inputs.animated_gif([DIGIT, 255 - DIGIT, DIGIT // 2]),
    "mpo": inputs.mpo([np.tile(DIGIT[..., None], (1, 1, 3)), np.zeros((12, 16, 3), np.uint8)]),
    "cmyk jpeg": inputs.cmyk_jpeg(np.tile(DIGIT[..., None], (1, 1, 3))),
    "16-bit png": inputs.sixteen_bit_png(DIGIT.astype(np.uint16) * 257),
    "palette png with transparency": inputs.palette_png_with_transparency(DIGIT),
    # Stored sideways, shown upright: the photo as a phone writes it, rotated 90 degrees by its EXIF tag.
    "exif-rotated jpeg": inputs.sideways_jpeg(np.ascontiguousarray(np.rot90(PORTRAIT, k=1)), quality=95),
    "exif-rotated png": inputs.encode(
        Image.fromarray(np.ascontiguousarray(np.rot90(PORTRAIT, k=1))), "PNG", exif=inputs.exif_orientation(6)
    ),
}


def _png(pixels: np.ndarray) -> bytes:
    return inputs.encode(Image.fromarray(pixels, mode="L"), "PNG")


def _predict(client: httpx.Client, data: bytes) -> httpx.Response:
    return client.post("/predict", files={"images": ("upload.bin", data, "application/octet-stream")})


def _probabilities(response: httpx.Response) -> dict[str, float]:
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]["probabilities"]


@pytest.mark.parametrize("kind", list(ACCEPTED))
def test_every_accepted_kind_is_answered_like_the_png_of_its_model_input(served_bento: ServedBento, kind: str) -> None:
    data = ACCEPTED[kind]
    pixels, _ = ImagePolicy().model_input(data, HEIGHT, WIDTH, CHANNELS)
    with served_bento.client() as client:
        answered = _probabilities(_predict(client, data))
        reference = _probabilities(_predict(client, _png(pixels[0])))
    assert answered == pytest.approx(reference, abs=1e-5)


def test_a_rotated_photo_is_seen_upright(served_bento: ServedBento) -> None:
    upright, _ = ImagePolicy().model_input(_png_rgb(PORTRAIT), HEIGHT, WIDTH, CHANNELS)
    sideways, _ = ImagePolicy().model_input(ACCEPTED["exif-rotated png"], HEIGHT, WIDTH, CHANNELS)
    ignored, _ = ImagePolicy().model_input(_png_rgb(np.rot90(PORTRAIT, k=1)), HEIGHT, WIDTH, CHANNELS)
    np.testing.assert_array_equal(sideways, upright)
    assert not np.array_equal(ignored, upright)  # the orientation matters for this image
    with served_bento.client() as client:
        assert _probabilities(_predict(client, ACCEPTED["exif-rotated png"])) == pytest.approx(
            _probabilities(_predict(client, _png(upright[0]))), abs=1e-5
        )


def _png_rgb(pixels: np.ndarray) -> bytes:
    return inputs.encode(Image.fromarray(np.ascontiguousarray(pixels)), "PNG")


def test_a_24_megapixel_photo_is_answered_on_both_upload_endpoints(served_bento: ServedBento) -> None:
    photo = inputs.large_photo(seed=3)
    pixels, _ = ImagePolicy().model_input(photo, HEIGHT, WIDTH, CHANNELS)
    with served_bento.client(timeout=60) as client:
        reference = _probabilities(_predict(client, _png(pixels[0])))
        assert _probabilities(_predict(client, photo)) == pytest.approx(reference, abs=1e-5)
        raw = client.post("/predict_image", content=photo, headers={"Content-Type": "image/jpeg"})
        assert _probabilities(raw) == pytest.approx(reference, abs=1e-5)


REFUSED = {
    "text.png": b"a text file wearing a .png suffix",
    "icon.ico": inputs.encode(Image.fromarray(DIGIT), "ICO"),
    "float.tif": inputs.encode(Image.fromarray(DIGIT.astype(np.float32), "F"), "TIFF"),
    "truncated-exif.jpg": inputs.jpeg_with_exif_block(
        np.tile(DIGIT[..., None], (1, 1, 3)), inputs.truncated_exif_block()
    ),
    "exif-outside.jpg": inputs.jpeg_with_exif_block(
        np.tile(DIGIT[..., None], (1, 1, 3)), inputs.exif_block_pointing_outside()
    ),
    "bad-orientation.jpg": inputs.jpeg_with_exif_block(
        np.tile(DIGIT[..., None], (1, 1, 3)), inputs.exif_block_with_bad_orientation(9)
    ),
    "tiny.png": inputs.encode(Image.new("L", (3, 3), 200), "PNG"),
    "bomb.png": png_claiming_size(8_000, 8_000),
    "truncated.png": inputs.encode(Image.fromarray(inputs.noise(1, (12, 16))), "PNG")[:80],
}


@pytest.fixture(scope="module")
def training_reasons(served_bento: ServedBento, digits_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The image policy's reason for each refused file, as training records it next to the served model's data."""
    root = shutil.copytree(digits_subset, tmp_path_factory.mktemp("refused") / "data")
    for name, data in REFUSED.items():
        inputs.write(root / "0" / name, data)
    validated = build_validated_dataset(
        scan_dataset(root), GeometryConfig(), tmp_path_factory.mktemp("validated") / "v"
    )
    assert validated.image_spec.input_shape == (CHANNELS, HEIGHT, WIDTH)
    stats = validated.statistics().set_index("path")
    return {name: stats.loc[f"0/{name}", "error"] for name in REFUSED}


@pytest.mark.parametrize("name", list(REFUSED))
def test_the_service_refuses_with_trainings_reason(
    served_bento: ServedBento, training_reasons: dict, name: str
) -> None:
    reason = training_reasons[name]
    assert reason, f"training accepted {name}"
    with served_bento.client() as client:
        response = _predict(client, REFUSED[name])
        assert response.status_code == 400, response.text
        assert response.json() == {"error": f"image 0: {reason}"}
        # Refusals never disturb the service.
        assert _predict(client, served_bento.samples[0][1]).status_code == 200


def test_the_served_package_records_the_policy_its_data_was_validated_under(served_bento: ServedBento) -> None:
    # The package the fixture trained and stored in the bento (see service_fixtures).
    document = read_package_document(settings.artifacts_dir() / "service-model")
    assert package_policy(document) == ImagePolicy()
    assert document["image_policy"]["allowed_formats"] == ["PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF"]
