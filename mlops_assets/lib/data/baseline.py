"""Baseline statistics of the training data, kept with the validated data for drift monitoring to compare against."""

from __future__ import annotations

import numpy as np
import pandas as pd

# Fixed bins over [0, 1] so live traffic can be histogrammed the same way without knowing the data.
UNIT_BINS = np.linspace(0.0, 1.0, 21)
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


def _distribution(values: pd.Series, bins: np.ndarray | None = None) -> dict:
    numbers = values.astype(float).to_numpy()
    summary = {
        "count": int(numbers.size),
        "mean": float(numbers.mean()),
        "std": float(numbers.std()),
        "min": float(numbers.min()),
        "max": float(numbers.max()),
        "quantiles": {f"p{round(q * 100)}": float(np.quantile(numbers, q)) for q in QUANTILES},
    }
    if bins is not None:
        counts, edges = np.histogram(np.clip(numbers, bins[0], bins[-1]), bins=bins)
        summary["histogram"] = {"edges": [float(edge) for edge in edges], "counts": [int(c) for c in counts]}
    return summary


def baseline_statistics(train: pd.DataFrame) -> dict:
    """Brightness, contrast and original size distributions and class frequencies of the kept training images."""
    if train.empty:
        raise ValueError("Cannot compute baseline statistics from an empty training split.")
    counts = train["label"].value_counts().sort_index()
    return {
        "num_images": int(len(train)),
        "brightness": _distribution(train["brightness"], UNIT_BINS),
        "contrast": _distribution(train["contrast"], UNIT_BINS),
        "width": _distribution(train["width"]),
        "height": _distribution(train["height"]),
        "modes": {str(mode): int(count) for mode, count in train["mode"].value_counts().sort_index().items()},
        "class_counts": {str(label): int(count) for label, count in counts.items()},
        "class_frequencies": {str(label): float(count / len(train)) for label, count in counts.items()},
    }
