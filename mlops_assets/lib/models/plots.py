"""PNG plots for the Dagster UI, rendered off-screen."""

from __future__ import annotations

import io
from collections.abc import Sequence


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _to_png(plt, figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def training_curves_png(history: Sequence[dict]) -> bytes:
    """Loss and accuracy per epoch, training and validation."""
    plt = _figure()
    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(9, 3.2))
    loss_axis.plot(epochs, [r["train_loss"] for r in history], label="train")
    loss_axis.plot(epochs, [r["val_loss"] for r in history], label="validation")
    loss_axis.set(title="Loss", xlabel="epoch")
    accuracy_axis.plot(epochs, [r["train_accuracy"] for r in history], label="train")
    accuracy_axis.plot(epochs, [r["val_accuracy"] for r in history], label="validation")
    accuracy_axis.set(title="Accuracy", xlabel="epoch", ylim=(0, 1.02))
    accuracy_axis.legend(loc="lower right")
    return _to_png(plt, figure)


def confusion_matrix_png(matrix: Sequence[Sequence[int]], labels: Sequence[str]) -> bytes:
    """Confusion matrix with counts in the cells; rows true, columns predicted."""
    plt = _figure()
    size = max(3.5, 0.45 * len(labels) + 1.5)
    figure, axis = plt.subplots(figsize=(size, size))
    axis.imshow(matrix, cmap="Blues")
    axis.set(xticks=range(len(labels)), yticks=range(len(labels)), xlabel="predicted", ylabel="true")
    axis.set_xticklabels(labels, rotation=90 if len(labels) > 12 else 0)
    axis.set_yticklabels(labels)
    peak = max((max(row) for row in matrix), default=0)
    for row_index, row in enumerate(matrix):
        for column_index, count in enumerate(row):
            if count:
                colour = "white" if count > peak / 2 else "black"
                axis.text(column_index, row_index, str(count), ha="center", va="center", color=colour, fontsize=8)
    return _to_png(plt, figure)
