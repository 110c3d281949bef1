"""The Great Expectations suites, profiles, baseline and Data Docs, on crafted tables and small datasets."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mlops_assets.lib.data.data_validation import LEAKAGE, GxSession, run_dataset_suites
from mlops_assets.lib.data.expectation_profiles import ExpectationProfile, load_profile
from mlops_assets.lib.data.label_memory import LabelMemory
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets.lib.errors import DatasetError
from mlops_assets_tests.conftest import write_png


def _stats(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"path": p, "label": label, "split": split, "sha256": digest, "quarantine_reason": ""}
            for p, label, split, digest in rows
        ]
    )


def _leakage(stats: pd.DataFrame):
    outcomes = run_dataset_suites(GxSession(), stats, pd.DataFrame(columns=["path", "reason"]), ExpectationProfile())
    return {outcome.role: outcome for outcome in outcomes}[LEAKAGE]


def test_leakage_check_fails_when_the_same_content_is_in_train_and_test() -> None:
    # Splits come from content hashes, so this cannot happen today; the check guards against a future change.
    stats = _stats([("a/1.png", "a", "train", "h1"), ("b/1.png", "b", "test", "h1"), ("a/2.png", "a", "test", "h2")])
    outcome = _leakage(stats)
    assert not outcome.passed
    assert outcome.summary.startswith("1 content hash(es) appear in both the test split and train/val")
    assert outcome.details == [{"sha256": "h1", "files": ["a/1.png (train)", "b/1.png (test)"]}]


def test_leakage_check_passes_when_test_content_is_disjoint() -> None:
    stats = _stats([("a/1.png", "a", "train", "h1"), ("a/3.png", "a", "val", "h1"), ("b/1.png", "b", "test", "h2")])
    outcome = _leakage(stats)
    assert outcome.passed
    assert (outcome.summary, outcome.details) == ("no content appears in both the test split and train/val", [])


@pytest.fixture
def validated(tmp_path: Path):
    rng = np.random.default_rng(2)
    for label, base, count in (("dark", 50, 30), ("light", 190, 20)):
        for index in range(count):
            write_png(tmp_path / "data" / label / f"{index}.png", base + rng.integers(-40, 40, (10, 12)))
    return build_validated_dataset(scan_dataset(tmp_path / "data"), GeometryConfig(), tmp_path / "validated")


def test_baseline_statistics_describe_the_kept_training_images(validated) -> None:
    baseline = validated.baseline()
    train = validated.statistics().query("split == 'train' and quarantine_reason == ''")
    assert baseline["num_images"] == len(train) == validated.split_counts["train"]
    assert baseline["class_counts"] == train["label"].value_counts().sort_index().to_dict()
    assert sum(baseline["brightness"]["histogram"]["counts"]) == len(train)
    assert baseline["width"]["quantiles"]["p50"] == 12
    assert baseline["brightness"]["mean"] == pytest.approx(train["brightness"].astype(float).mean())


def test_data_docs_and_quarantine_report_are_written_next_to_the_data(validated) -> None:
    index = validated.data_docs_index
    assert index.is_file()
    html = index.read_text()
    for suite in ("per_file", "quarantine", "classes", "leakage", "duplicates"):
        assert suite in html
    assert list(validated.quarantine().columns) == ["path", "label", "reason", "status"]


def test_a_validation_leaves_nothing_in_the_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """GX's ephemeral context has a default Data Docs site in a fresh temporary folder; building the docs must write
    only the dataset's own site, or every validation leaves a folder behind."""
    import tempfile

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    rng = np.random.default_rng(3)
    for label, base in (("dark", 50), ("light", 190)):
        for index in range(12):
            write_png(tmp_path / "data" / label / f"{index}.png", base + rng.integers(-40, 40, (8, 8)))
    validated = build_validated_dataset(scan_dataset(tmp_path / "data"), GeometryConfig(), tmp_path / "validated")
    assert validated.data_docs_index.is_file()
    assert list(temporary.iterdir()) == []


def test_profiles_load_by_name_or_path_and_reject_unknown_settings(tmp_path: Path) -> None:
    assert load_profile() == ExpectationProfile()
    digits = load_profile("digits")
    assert digits.allowed_modes == ("L",) and digits.labels == tuple(str(d) for d in range(10))
    custom = tmp_path / "strict.yaml"
    custom.write_text("name: strict\ndataset: {min_images_per_class: 50}\n")
    assert load_profile(str(custom)).min_images_per_class == 50
    custom.write_text("per_file: {max_sidez: 3}\n")
    with pytest.raises(DatasetError) as unknown:
        load_profile(str(custom))
    assert str(unknown.value).startswith(f"{custom}: per_file.max_sidez = 3: unknown setting (known: name, ")
    with pytest.raises(DatasetError, match="not found"):
        load_profile("no-such-profile")


def test_digits_profile_accepts_the_sample_and_quarantines_other_modes(digits_subset: Path, tmp_path: Path) -> None:
    validated = build_validated_dataset(
        scan_dataset(digits_subset), GeometryConfig(), tmp_path / "validated", profile=load_profile("digits")
    )
    assert validated.num_quarantined == 0
    assert all(outcome.passed for outcome in validated.outcomes())

    # The same sample plus one colour digit: the digits profile allows greyscale only.
    dataset = shutil.copytree(digits_subset, tmp_path / "with-colour")
    grey = np.asarray(Image.open(next((dataset / "3").glob("*.png"))).convert("L"))
    write_png(dataset / "3" / "colour.png", np.stack([grey, grey // 2, grey], axis=-1), mode="RGB")
    mixed = build_validated_dataset(
        scan_dataset(dataset), GeometryConfig(), tmp_path / "validated-mixed", profile=load_profile("digits")
    )
    assert mixed.quarantine().to_dict("records") == [
        {
            "path": "3/colour.png",
            "label": "3",
            "reason": "image mode RGB is not in the profile's allowed_modes ['L']",
            "status": "quarantined",
        }
    ]
    assert sum(mixed.split_counts.values()) == sum(validated.split_counts.values())


def test_label_memory_keeps_the_first_record(tmp_path: Path) -> None:
    memory = LabelMemory(tmp_path)
    assert memory.recall("/data/x") is None
    path = memory.remember("/data/x", ("b", "a"), "v1")
    memory.remember("/data/x", ("a", "b", "c"), "v2")
    assert memory.recall("/data/x") == ("a", "b")
    assert json.loads(path.read_text())["data_version"] == "v1"
