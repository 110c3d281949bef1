"""The run summary `mlops run` prints counts label folders as the dataset has them: an empty one (which the
class_coverage check reports) is counted and named, not hidden behind the number of classes with images; a promotion
refused because production changed since the gate says what production is now and who put it there."""

from pathlib import Path

import pytest

from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets.runner import RunSummary, format_summary, production_now
from mlops_assets_tests.registry_helpers import registered


def _summary(num_classes: int, empty: list[str]) -> RunSummary:
    # The values raw_images records, as the runner reads them back from the materialization's metadata.
    raw_images = {
        "dataset": "current",
        "dataset_version": "-",
        "dataset_source": "folder",
        "num_images": 60,
        "num_classes": num_classes,
        "empty_label_folders": empty,
        "data_version": "0123456789abcdef0123",
    }
    return RunSummary(run_id="r1", success=False, materialized={"raw_images": raw_images})


def _dataset_line(summary: RunSummary) -> str:
    (line,) = [line for line in format_summary(summary).splitlines() if line.startswith("  dataset:")]
    return line


@pytest.mark.parametrize(
    ("num_classes", "empty", "phrase"),
    [
        (2, ["cat"], ": 60 images, 3 label folders, 1 empty (cat), data version 0123456789abcdef"),
        (2, ["cat", "dog"], ": 60 images, 4 label folders, 2 empty (cat, dog), data version 0123456789abcdef"),
        (2, [], ": 60 images, 2 label folders, data version 0123456789abcdef"),
        (1, [], ": 60 images, 1 label folder, data version 0123456789abcdef"),
    ],
    ids=["one empty", "two empty", "none empty", "one folder"],
)
def test_the_dataset_line_counts_every_label_folder_and_names_the_empty_ones(
    num_classes: int, empty: list[str], phrase: str
) -> None:
    line = _dataset_line(_summary(num_classes, empty))
    assert line.endswith(phrase), line
    assert "classes" not in line


def test_a_promotion_refused_since_the_gate_says_what_production_is_now_and_who_put_it_there(tmp_path: Path) -> None:
    with ModelRegistry(f"sqlite:///{tmp_path / 'registry.db'}", "local") as models:
        assert production_now(models) == "no version is in production in local"
        one, two = registered(models, 1), registered(models, 2)
        models.promote(one, "production", actor="dagster run first")
        models.promote(two, "production", actor="dagster run second")
        models.rollback(actor="alice (mlops cli)", reason="bad")
        rolled_back_to_one = production_now(models)
        models.promote(two, "production", actor="dagster run third", reason="fixed")
        promoted_two = production_now(models)
        (at,) = [e.at for e in models.history(two) if e.to_status == "production" and e.actor == "dagster run third"]
        (back,) = [e.at for e in models.history(one) if e.action == "rollback"]

    assert promoted_two == f"version 2, promoted by dagster run third on {at:%Y-%m-%d %H:%M:%S} UTC"
    assert rolled_back_to_one == f"version 1, rolled back to by alice (mlops cli) on {back:%Y-%m-%d %H:%M:%S} UTC"
    # The gate's champion stays as the gate saw it; the production line says what changed since.
    summary = RunSummary(
        run_id="r2",
        success=False,
        materialized={
            "model_evaluation": {
                "accuracy": 1.0,
                "macro_f1": 1.0,
                "num_test_images": 9,
                "champion": "none: no model in production yet",
            }
        },
        failures=["step model_promotion failed: Version 2 was not promoted: production changed since the gate; ..."],
        production_now=promoted_two,
    )
    assert format_summary(summary).splitlines()[1:4] == [
        "  test metrics:  accuracy 1.0000, macro F1 1.0000 on 9 test images",
        "  champion:      none: no model in production yet",
        f"  production:    changed since the gate; now {promoted_two}",
    ]
