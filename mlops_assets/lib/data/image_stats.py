"""Per-image statistics computed the same way for validation, baselines and live traffic."""

from __future__ import annotations

import numpy as np
from PIL import Image

STAT_COLUMNS = ("width", "height", "mode", "brightness", "contrast")


def image_statistics(original: Image.Image, model_input: np.ndarray) -> dict[str, float | int | str]:
    """Size and mode of the original; brightness (mean) and contrast (std) of the uint8 model input, in [0, 1]."""
    scaled = model_input.astype(np.float32) / 255.0
    return {
        "width": original.width,
        "height": original.height,
        "mode": original.mode,
        "brightness": float(scaled.mean()),
        "contrast": float(scaled.std()),
    }
