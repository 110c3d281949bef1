"""Metadata the Dagster UI shows in place: typed, described tables, pictures under its Markdown limit, home-relative
paths that resolve back."""

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlops_assets.defs.metadata import home_path, resolve_home_path, table
from mlops_assets.defs.pictures import INLINE_MARKDOWN_LIMIT, confusion_thumbnail, training_curves_thumbnail


def test_table_types_and_describes_every_column_and_rounds_floats() -> None:
    value = table(
        [{"label": "cat", "f1": 0.123456, "support": 3}, {"label": "dog", "f1": 1, "support": 4}],
        {"label": "Class", "f1": "F1 (0 to 1)", "support": "Test images"},
    )
    assert [(c.name, c.type, c.description) for c in value.schema.columns] == [
        ("label", "string", "Class"),
        ("f1", "float", "F1 (0 to 1)"),
        ("support", "int", "Test images"),
    ]
    assert [record.data for record in value.records] == [
        {"label": "cat", "f1": 0.1235, "support": 3},
        {"label": "dog", "f1": 1, "support": 4},
    ]


def test_paths_under_the_home_are_relative_and_resolve_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    inside = home_path(tmp_path / "artifacts" / "trained_model" / "abc")
    assert (type(inside), inside.value) == (dg.PathMetadataValue, "artifacts/trained_model/abc")
    assert resolve_home_path(inside.value) == tmp_path / "artifacts" / "trained_model" / "abc"
    assert home_path("/srv/data/digits").value == "/srv/data/digits"
    assert resolve_home_path("/srv/data/digits") == Path("/srv/data/digits")
    url = home_path("gs://bucket/staging/artifacts/x")
    assert (type(url), url.value) == (dg.UrlMetadataValue, "gs://bucket/staging/artifacts/x")


def test_thumbnails_fit_the_markdown_the_ui_renders_in_place() -> None:
    rng = np.random.default_rng(3)
    history = [
        {
            "train_loss": 2 * np.exp(-epoch / 5) + rng.random() * 0.2,
            "val_loss": 2 * np.exp(-epoch / 5) + rng.random() * 0.4,
            "train_accuracy": 1 - np.exp(-epoch / 4),
            "val_accuracy": (1 - np.exp(-epoch / 4)) * rng.random(),
        }
        for epoch in range(60)
    ]
    curves = training_curves_thumbnail(history).value
    assert len(curves) < INLINE_MARKDOWN_LIMIT
    assert "![training curves](data:image/png;base64," in curves
    matrix = (np.diag(rng.integers(20, 40, 40)) + rng.integers(0, 4, (40, 40))).tolist()
    confusion = confusion_thumbnail(matrix).value
    assert len(confusion) < INLINE_MARKDOWN_LIMIT
    assert "![confusion matrix](data:image/png;base64," in confusion


@pytest.mark.parametrize("epochs", [1, 2, 3, 5, 10, 20, 50, 100, 300])
def test_training_curves_of_any_shape_show_in_place(epochs: int) -> None:
    # Noise compresses worst: every epoch's values drawn at random is the hardest history a run can produce.
    rng = np.random.default_rng(epochs)
    for _ in range(10):
        history = [
            {
                "train_loss": float(rng.random() * 3),
                "val_loss": float(rng.random() * 3),
                "train_accuracy": float(rng.random()),
                "val_accuracy": float(rng.random()),
            }
            for _ in range(epochs)
        ]
        curves = training_curves_thumbnail(history).value
        assert len(curves) < INLINE_MARKDOWN_LIMIT, (epochs, len(curves))
