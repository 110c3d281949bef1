"""Generate a learnable synthetic image dataset of any size (class = stroke position and orientation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

_MODES = {1: "L", 3: "RGB"}


def generate_dataset(
    root: Path, count: int, classes: int = 10, side: int = 16, seed: int = 0, channels: int = 1
) -> Path:
    """Write `count` PNGs (greyscale, or RGB with `channels=3`) as `<root>/<class>/<index>.png`; all bytes unique."""
    if channels not in _MODES:
        raise ValueError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels}.")
    rng = np.random.default_rng(seed)
    for label in range(classes):
        (root / f"class_{label}").mkdir(parents=True, exist_ok=True)
    # Greyscale keeps its original 2-D draws, so existing callers get the same files for the same seed.
    shape = (side, side) if channels == 1 else (side, side, channels)
    for index in range(count):
        label = index % classes
        image = rng.normal(40, 12, shape)
        position = 2 + (label % 5) * (side - 4) // 5
        if label < 5:
            image[:, position : position + 2] += 170
        else:
            image[position : position + 2, :] += 170
        image += rng.normal(0, 10, shape)
        pixels = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode=_MODES[channels]).save(root / f"class_{label}" / f"{index:06d}.png")
    return root
