"""The run summary `mlops run` prints counts label folders as the dataset has them: an empty one (which the
class_coverage check reports) is counted and named, not hidden behind the number of classes with images."""

import pytest

from mlops_assets.runner import RunSummary, format_summary


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
