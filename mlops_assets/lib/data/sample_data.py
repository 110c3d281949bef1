"""The bundled sample dataset: scikit-learn's handwritten digits exported as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from mlops_assets.lib.atomic import atomic_directory

SAMPLE_NAME = "digits"


def export_digits(destination: Path, per_class_limit: int | None = None) -> Path:
    """Write the digits as `<destination>/<digit>/<index>.png` (8-bit grayscale), once; returns the folder."""
    # The folder appears whole or not at all (atomic_directory), so its existence means a finished export; no marker
    # file, which would be one more entry in the dataset.
    if destination.is_dir():
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
    return destination
