"""Per-image statistics computed the same way for validation, baselines and live traffic."""

from __future__ import annotations

import numpy as np

from mlops_assets.lib.data.image_policy import ImageHeader

STAT_COLUMNS = ("format", "width", "height", "mode", "brightness", "contrast")


def image_statistics(header: ImageHeader, model_input: np.ndarray) -> dict[str, float | int | str]:
    """Format, displayed size (px) and mode of the file; brightness (mean) and contrast (std) of the uint8 model
    input, in [0, 1]."""
    scaled = model_input.astype(np.float32) / 255.0
    return {
        "format": header.format,
        "width": header.width,
        "height": header.height,
        "mode": header.mode,
        "brightness": float(scaled.mean()),
        "contrast": float(scaled.std()),
    }
