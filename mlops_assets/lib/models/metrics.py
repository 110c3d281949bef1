"""Classification metrics on integer labels, all as fractions in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
    return matrix


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix."""
    if len(y_true) == 0:
        raise ValueError("Cannot evaluate on an empty test split; add more images so the test split is non-empty.")
    matrix = confusion_matrix(y_true, y_pred, len(labels))
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    present = support > 0
    return {
        "accuracy": float(true_positive.sum() / len(y_true)),
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "num_examples": int(len(y_true)),
        "per_class": [
            {
                "label": label,
                "precision": float(precision[index]),
                "recall": float(recall[index]),
                "f1": float(f1[index]),
                "support": int(support[index]),
            }
            for index, label in enumerate(labels)
        ],
        "confusion_matrix": matrix.tolist(),
    }
