import numpy as np
import pytest

from mlops_assets.lib.models.metrics import classification_report


def test_report_matches_hand_computed_values() -> None:
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 1, 1, 0])
    report = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert report["accuracy"] == pytest.approx(3 / 5)
    per_class = {row["label"]: row for row in report["per_class"]}
    assert per_class["a"]["precision"] == pytest.approx(1 / 2)
    assert per_class["a"]["recall"] == pytest.approx(1 / 2)
    assert per_class["b"]["precision"] == pytest.approx(2 / 3)
    assert per_class["b"]["recall"] == pytest.approx(1.0)
    assert per_class["c"]["f1"] == 0.0
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_empty_test_split_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="empty test split"):
        classification_report(np.array([]), np.array([]), ["a"])
