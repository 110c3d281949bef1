"""PNG plots of a monitored day against its baseline, for the asset's metadata (the HTML report has Evidently's)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

_UNIT_BINS = np.linspace(0.0, 1.0, 21)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # off-screen: the run has no display
    import matplotlib.pyplot as plt

    return plt


def _histogram(axis, reference: pd.Series, current: pd.Series, title: str) -> None:
    for values, name, colour in ((reference, "baseline", "tab:blue"), (current, "today", "tab:orange")):
        weights = np.full(len(values), 1.0 / max(len(values), 1))
        axis.hist(
            np.clip(values.astype(float), 0, 1), bins=_UNIT_BINS, weights=weights, alpha=0.55, label=name, color=colour
        )
    axis.set(title=title, ylabel="share")


def drift_png(current: pd.DataFrame, inputs: pd.DataFrame, predictions: pd.DataFrame) -> bytes:
    """Brightness, contrast and confidence histograms (shares over [0, 1]) and predicted-label shares, baseline
    beside the day's records."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 4, figsize=(15, 3.2))
    _histogram(axes[0], inputs["brightness"], current["brightness"], "Input brightness")
    _histogram(axes[1], inputs["contrast"], current["contrast"], "Input contrast")
    _histogram(axes[2], predictions["confidence"], current["confidence"], "Confidence")
    labels = sorted(set(predictions["label"].astype(str)) | set(current["label"].astype(str)))
    positions = np.arange(len(labels))
    baseline_share = predictions["label"].astype(str).value_counts(normalize=True).reindex(labels, fill_value=0)
    current_share = current["label"].astype(str).value_counts(normalize=True).reindex(labels, fill_value=0)
    axes[3].bar(positions - 0.2, baseline_share.to_numpy(), width=0.4, label="baseline", color="tab:blue")
    axes[3].bar(positions + 0.2, current_share.to_numpy(), width=0.4, label="today", color="tab:orange")
    axes[3].set_xticks(positions)
    axes[3].set_xticklabels(labels, rotation=90 if len(labels) > 12 else 0)
    axes[3].set(title="Predicted label", ylabel="share")
    axes[3].legend(loc="upper right")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
