import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.preprocessing import ImageSpec, decode_image, infer_geometry, normalize, preprocess_bytes
from mlops_assets.lib.data.splits import SPLITS
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets.lib.errors import InvalidImageError
from mlops_assets_tests.conftest import png_claiming_size, write_png


def _png_bytes(pixels: np.ndarray, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def mixed_dataset(tmp_path: Path) -> Path:
    """RGB images of two sizes plus a JPEG: exercises resize, channel handling and lossy decoding."""
    rng = np.random.default_rng(3)
    for label in ("red", "blue"):
        for index in range(12):
            write_png(tmp_path / label / f"{index}.png", rng.integers(0, 255, (20, 30, 3)), mode="RGB")
        write_png(tmp_path / label / "odd.png", rng.integers(0, 255, (41, 17, 3)), mode="RGB")
        Image.fromarray(rng.integers(0, 255, (20, 30, 3)).astype(np.uint8)).save(tmp_path / label / "photo.jpg")
    return tmp_path


def test_serving_path_gives_exactly_the_training_inputs(mixed_dataset: Path, tmp_path: Path) -> None:
    manifest = scan_dataset(mixed_dataset)
    validated = build_validated_dataset(manifest, GeometryConfig(max_side=16), tmp_path / "validated")
    spec = validated.image_spec
    assert (spec.channels, spec.height, spec.width) == (3, 11, 16)
    stats = validated.statistics().set_index("path")
    for split in SPLITS:
        data = validated.load_split(split)
        training_inputs = normalize(data.images, spec)
        paths = [path for path in stats.index if stats.loc[path, "split"] == split]
        served = np.stack([preprocess_bytes((mixed_dataset / path).read_bytes(), spec) for path in paths])
        np.testing.assert_array_equal(training_inputs, served)


def test_geometry_is_inferred_from_the_data() -> None:
    assert infer_geometry([(8, 8)] * 3 + [(10, 10)], ["L"] * 4, max_side=64) == (8, 8, 1)
    assert infer_geometry([(200, 100)], ["RGB"], max_side=64) == (32, 64, 3)


def test_normalization_uses_the_spec_mean_and_std() -> None:
    spec = ImageSpec(1, 2, 1, mean=(0.5,), std=(0.25,))
    images = np.array([[[[0, 255]]]], dtype=np.uint8)
    np.testing.assert_allclose(normalize(images, spec), [[[[-2.0, 2.0]]]])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "empty"),
        (b"just some text, not an image", "not a recognised image"),
        (_png_bytes(np.random.default_rng(0).integers(0, 255, (40, 40)))[:400], "damaged or truncated"),
        (png_claiming_size(20_000, 20_000), "the limit of 40,000,000 pixels"),
        (png_claiming_size(8_000, 8_000), "the limit of 40,000,000 pixels"),
    ],
    ids=["empty", "text", "truncated", "bomb-header", "over-our-limit"],
)
def test_bad_bytes_raise_a_clear_error(payload: bytes, message: str) -> None:
    with pytest.raises(InvalidImageError, match=message):
        decode_image(payload)
