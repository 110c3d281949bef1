"""Image decoding and normalization: the one code path shared by training, evaluation and serving."""

from __future__ import annotations

import io
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mlops_assets.lib.errors import InvalidImageError

# Pillow's own bomb guard warns at 89 Mpx and raises at twice that; we refuse earlier, with our message.
MAX_IMAGE_PIXELS = 40_000_000
_MODE_FOR_CHANNELS = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class ImageSpec:
    """Geometry and normalization every model input goes through; stored with the model."""

    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ImageSpec:
        return cls(
            height=int(data["height"]),
            width=int(data["width"]),
            channels=int(data["channels"]),
            mean=tuple(float(value) for value in data["mean"]),
            std=tuple(float(value) for value in data["std"]),
        )


def decode_image(data: bytes) -> Image.Image:
    """Decode bytes into a fully loaded image, or raise InvalidImageError saying why."""
    if not data:
        raise InvalidImageError("The image data is empty (0 bytes); send the bytes of a PNG or JPEG image.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InvalidImageError(
                    f"Image is {width}x{height}, above the limit of {MAX_IMAGE_PIXELS:,} pixels; resize it first."
                )
            image.load()
    except InvalidImageError:
        raise
    except UnidentifiedImageError as error:
        raise InvalidImageError("The bytes are not a recognised image; send a PNG or JPEG file.") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InvalidImageError(
            f"Image refused: its header claims more than the limit of {MAX_IMAGE_PIXELS:,} pixels "
            "(a possible decompression bomb); resize it first."
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise InvalidImageError(f"The image is damaged or truncated and cannot be decoded: {error}") from error
    # In place: the default returns a copy of every image even when it has no orientation tag to apply.
    ImageOps.exif_transpose(image, in_place=True)
    return image


# Every mode a dataset or an upload may arrive in, and what it becomes before resizing (README: "Image modes").
# Anything else (float "F", 32-bit colour, LAB, HSV) is refused with a message rather than guessed at.
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
SUPPORTED_MODES = frozenset({"1", "L", "P", "RGB", "CMYK", "YCbCr"}) | ALPHA_MODES | SIXTEEN_BIT_MODES
# Transparent pixels are composited over white, so a transparent background never leaks its hidden colour.
ALPHA_BACKGROUND = (255, 255, 255, 255)


def to_eight_bit(image: Image.Image) -> Image.Image:
    """The image as "L" or "RGB" (8 bits per channel), with the explicit rule for each source mode."""
    mode = image.mode
    if mode not in SUPPORTED_MODES:
        raise InvalidImageError(
            f"Image mode {mode} is not supported; save the image as 8-bit greyscale (L) or RGB (PNG or JPEG)."
        )
    if mode in SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips at 255 (a 16-bit image turns white); map 0..65535 linearly onto 0..255.
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return Image.fromarray((values // 257).astype(np.uint8), mode="L")
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, ALPHA_BACKGROUND)
        flattened = Image.alpha_composite(background, image.convert("RGBA"))
        return flattened.convert("L" if mode in {"LA", "La"} else "RGB")
    # "1", "L" and "RGB" stay; "P" expands its palette; CMYK and YCbCr use Pillow's conversion (no ICC profile).
    return image if mode in {"L", "RGB"} else image.convert("L" if mode == "1" else "RGB")


def to_uint8_array(image: Image.Image, height: int, width: int, channels: int) -> np.ndarray:
    """Convert to the model's channel count and size; returns uint8 [channels, height, width]."""
    if channels not in _MODE_FOR_CHANNELS:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    converted = to_eight_bit(image)
    if converted.mode != _MODE_FOR_CHANNELS[channels]:
        # Only when the channel count changes: converting to the same mode is a copy of every pixel.
        converted = converted.convert(_MODE_FOR_CHANNELS[channels])
    if converted.size != (width, height):
        converted = converted.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(converted, dtype=np.uint8)
    if channels == 1:
        return array[np.newaxis, :, :]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def normalize(images: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """uint8 [..., C, H, W] to float32 standardized with the training split's per-channel mean and std."""
    scaled = images.astype(np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    return (scaled - mean) / std


def preprocess_bytes(data: bytes, spec: ImageSpec) -> np.ndarray:
    """Serving's path from uploaded bytes to a model input [C, H, W]: the same functions training used."""
    image = decode_image(data)
    return normalize(to_uint8_array(image, spec.height, spec.width, spec.channels), spec)


def channel_statistics(train_images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (of pixel/255) over uint8 images [N, C, H, W]; std floored to stay finite."""
    if train_images.size == 0:
        raise ValueError("Cannot compute normalization statistics from an empty training split.")
    scaled = train_images.astype(np.float64) / 255.0
    mean = scaled.mean(axis=(0, 2, 3))
    std = np.maximum(scaled.std(axis=(0, 2, 3)), 1e-3)
    return tuple(float(value) for value in mean), tuple(float(value) for value in std)


def infer_geometry(sizes: Iterable[tuple[int, int]], modes: Sequence[str], max_side: int) -> tuple[int, int, int]:
    """(height, width, channels) from the data: the most common size, scaled so its long side <= max_side."""
    counted = Counter(sizes)
    if not counted:
        raise ValueError("No decodable images to infer the input geometry from.")
    (width, height), _ = counted.most_common(1)[0]
    scale = min(1.0, max_side / max(width, height))
    height, width = max(1, round(height * scale)), max(1, round(width * scale))
    colour_modes = {"RGB", "RGBA", "RGBa", "CMYK", "YCbCr", "P", "PA"}
    channels = 3 if any(mode in colour_modes for mode in modes) else 1
    return height, width, channels
