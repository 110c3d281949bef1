"""How a decoded image becomes the model's uint8 array: the explicit rule for each colour mode, then resizing.

Part of the image policy (`image_policy`); training, evaluation and serving all convert through these functions.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mlops_assets.lib.errors import InvalidImageError

# Every mode a file may decode to, and what it becomes before resizing (README: "Image modes"). Anything else
# (float "F", 32-bit colour "I;32", LAB, HSV) is refused with a message rather than guessed at.
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
SUPPORTED_MODES = frozenset({"1", "L", "P", "RGB", "RGBX", "CMYK", "YCbCr"}) | ALPHA_MODES | SIXTEEN_BIT_MODES
# In a stable, readable order: the default of the image policy and of the expectation profiles.
ALL_MODES = ("1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr") + tuple(
    sorted(SIXTEEN_BIT_MODES)
)
# Modes that carry colour: a dataset with any of them becomes a 3-channel model input when inferred.
COLOUR_MODES = frozenset({"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "P", "PA"})
_MODE_FOR_CHANNELS = {1: "L", 3: "RGB"}


def to_eight_bit(image: Image.Image, alpha_background: int = 255) -> Image.Image:
    """The image as "L" or "RGB" (8 bits per channel), with the explicit rule for each source mode.

    Transparent pixels are composited over the grey level `alpha_background` (255: white), so a transparent
    background never leaks the colour hidden under it. Raises InvalidImageError for a mode with no rule.
    """
    mode = image.mode
    if mode not in SUPPORTED_MODES:
        raise InvalidImageError(
            f"mode not accepted: image mode {mode} has no conversion; save the image as 8-bit greyscale (L) or RGB."
        )
    if mode in SIXTEEN_BIT_MODES:
        # Pillow's own conversion clips at 255 (a 16-bit image turns white); map 0..65535 linearly onto 0..255.
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535)
        return Image.fromarray((values // 257).astype(np.uint8), mode="L")
    if mode in ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        background = Image.new("RGBA", image.size, (alpha_background,) * 3 + (255,))
        flattened = Image.alpha_composite(background, image.convert("RGBA"))
        return flattened.convert("L" if mode in {"LA", "La"} else "RGB")
    # "L" and "RGB" stay; "1" becomes L; "P" expands its palette; RGBX drops its padding byte; CMYK and YCbCr use
    # Pillow's conversion (no ICC colour management).
    return image if mode in {"L", "RGB"} else image.convert("L" if mode == "1" else "RGB")


def to_uint8_array(
    image: Image.Image,
    height: int,
    width: int,
    channels: int,
    alpha_background: int = 255,
    reducing_gap: float | None = None,
) -> np.ndarray:
    """Convert to the model's channel count and size; returns uint8 [channels, height, width].

    With `reducing_gap`, a much larger image is first shrunk by an integer factor (Pillow's `reduce`) while at least
    `reducing_gap` times the target remains per side, then resized with bilinear filtering.
    """
    if channels not in _MODE_FOR_CHANNELS:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    converted = to_eight_bit(image, alpha_background)
    if converted.mode != _MODE_FOR_CHANNELS[channels]:
        # Only when the channel count changes: converting to the same mode is a copy of every pixel.
        converted = converted.convert(_MODE_FOR_CHANNELS[channels])
    if converted.size != (width, height):
        converted = converted.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=reducing_gap)
    array = np.asarray(converted, dtype=np.uint8)
    if channels == 1:
        return array[np.newaxis, :, :]
    return np.ascontiguousarray(array.transpose(2, 0, 1))
