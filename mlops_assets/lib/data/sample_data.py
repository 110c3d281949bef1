"""The bundled sample dataset: scikit-learn's handwritten digits exported as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mlops_assets.lib.atomic import atomic_directory

SAMPLE_NAME = "digits"
_COMPLETE_MARKER = ".complete"


def export_digits(destination: Path, per_class_limit: int | None = None) -> Path:
    """Write the digits as `<destination>/<digit>/<index>.png` (8-bit grayscale), once; returns the folder."""
    if (destination / _COMPLETE_MARKER).exists():
        return destination
    from sklearn.datasets import load_digits

    digits = load_digits()
    written: dict[int, int] = {}
    with atomic_directory(destination) as staging:
        for index, (pixels, target) in enumerate(zip(digits.images, digits.target, strict=True)):
            label = int(target)
            if per_class_limit is not None and written.get(label, 0) >= per_class_limit:
                continue
            # The source values are 0..16 ink levels; scale to 0..255 and draw dark ink on white paper.
            grey = (255 - np.round(pixels * 255.0 / 16.0)).astype(np.uint8)
            folder = staging / str(label)
            folder.mkdir(exist_ok=True)
            Image.fromarray(grey, mode="L").save(folder / f"{index:04d}.png", optimize=False)
            written[label] = written.get(label, 0) + 1
        (staging / _COMPLETE_MARKER).touch()
    return destination
