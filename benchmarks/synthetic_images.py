"""Generate a learnable synthetic image dataset of any size (class = stroke position and orientation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def generate_dataset(root: Path, count: int, classes: int = 10, side: int = 16, seed: int = 0) -> Path:
    """Write `count` grayscale PNGs as `<root>/<class>/<index>.png`; every file's bytes are unique."""
    rng = np.random.default_rng(seed)
    for label in range(classes):
        (root / f"class_{label}").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        label = index % classes
        image = rng.normal(40, 12, (side, side))
        position = 2 + (label % 5) * (side - 4) // 5
        if label < 5:
            image[:, position : position + 2] += 170
        else:
            image[position : position + 2, :] += 170
        image += rng.normal(0, 10, (side, side))
        pixels = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(root / f"class_{label}" / f"{index:06d}.png")
    return root
