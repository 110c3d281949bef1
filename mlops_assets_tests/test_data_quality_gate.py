"""The blocking Great Expectations checks run inside Dagster and stop training on bad data."""

import hashlib
import os
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlops_assets.defs.evaluation.assets import model_evaluation
from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.training.assets import trained_model
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.defs.validation.checks import (
    CLASS_COVERAGE_CHECK,
    DESCRIPTIONS,
    DUPLICATES_CHECK,
    LABEL_SET_CHECK,
    QUARANTINE_CHECK,
    validated_images_quality,
)
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.bento_store import LocalBentoStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.registry import ModelRegistryResource
from mlops_assets_tests.conftest import write_png
from mlops_assets_tests.dataset_resources import dataset_store_under, registry_under

FAST_TRAINING = {"ops": {"trained_model": {"config": {"epochs": 2}}}}


def _materialize(dataset: Path, artifacts: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_images, validated_images, trained_model, model_evaluation, validated_images_quality],
        resources={
            "dataset": FolderDatasetSource(root=str(dataset)),
            "artifacts": LocalArtifactStore(root=str(artifacts)),
            "dataset_store": dataset_store_under(artifacts),
            "registry": ModelRegistryResource(url=f"sqlite:///{artifacts}/registry.db"),
            "bento_store": LocalBentoStore(),
        },
        run_config=FAST_TRAINING,
        raise_on_error=False,
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}


def _descriptions(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    return {evaluation.check_name: evaluation.description for evaluation in result.get_asset_check_evaluations()}


def _materialized(result: dg.ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


@pytest.fixture
def clean_dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    for label, base in (("dark", 40), ("light", 200)):
        for index in range(30):
            write_png(tmp_path / "data" / label / f"{index}.png", base + rng.integers(-30, 30, (8, 8)))
    return tmp_path / "data"


def test_clean_data_passes_every_check_and_trains(clean_dataset: Path, tmp_path: Path) -> None:
    result = _materialize(clean_dataset, tmp_path / "artifacts")
    assert result.success
    assert _checks(result) == dict.fromkeys(DESCRIPTIONS, True)
    assert {"trained_model", "model_evaluation"} <= _materialized(result)


def test_a_class_with_too_few_images_blocks_training(clean_dataset: Path, tmp_path: Path) -> None:
    write_png(clean_dataset / "rare" / "only.png", np.full((8, 8), 120) + np.eye(8) * 50)
    result = _materialize(clean_dataset, tmp_path / "artifacts")
    assert not result.success
    assert _checks(result)[CLASS_COVERAGE_CHECK] is False
    assert (
        "class 'rare' has 1 usable image(s), below min_images_per_class 5"
        in _descriptions(result)[CLASS_COVERAGE_CHECK]
    )
    assert "validated_images" in _materialized(result)
    assert "trained_model" not in _materialized(result)


def test_many_undecodable_files_block_training(clean_dataset: Path, tmp_path: Path) -> None:
    for index in range(5):
        (clean_dataset / "dark" / f"broken{index}.png").write_bytes(b"definitely not a png")
    result = _materialize(clean_dataset, tmp_path / "artifacts")
    assert not result.success
    assert _checks(result)[QUARANTINE_CHECK] is False
    assert "5 of 65 files quarantined (7.7%)" in _descriptions(result)[QUARANTINE_CHECK]
    assert "trained_model" not in _materialized(result)


VALIDATION_ONLY = [raw_images, validated_images, validated_images_quality]


def _validate_in_dagster(dataset: Path, artifacts: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        VALIDATION_ONLY,
        resources={
            "dataset": FolderDatasetSource(root=str(dataset)),
            "artifacts": LocalArtifactStore(root=str(artifacts)),
            "dataset_store": dataset_store_under(artifacts),
            "registry": registry_under(artifacts),
        },
        raise_on_error=False,
    )


def _evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}


def _tree_digest(root: Path) -> dict[str, str]:
    """Every entry under root: a regular file's SHA-256, or a symlink's target (links are not followed)."""
    digests = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            digests[relative] = f"-> {os.readlink(path)}"
        elif path.is_file():
            digests[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def test_clean_data_reports_every_check_with_its_severity(clean_dataset: Path, tmp_path: Path) -> None:
    evaluations = _evaluations(_validate_in_dagster(clean_dataset, tmp_path / "artifacts"))
    assert set(evaluations) == set(DESCRIPTIONS)
    assert all(evaluation.passed for evaluation in evaluations.values())
    assert {name for name, e in evaluations.items() if e.severity == dg.AssetCheckSeverity.WARN} == {DUPLICATES_CHECK}


def test_class_with_one_image_blocks_with_the_stated_reason(clean_dataset: Path, tmp_path: Path) -> None:
    write_png(clean_dataset / "rare" / "only.png", np.full((8, 8), 120) + np.eye(8) * 50)
    evaluation = _evaluations(_validate_in_dagster(clean_dataset, tmp_path / "artifacts"))[CLASS_COVERAGE_CHECK]
    assert not evaluation.passed
    assert "class 'rare' has 1 usable image(s), below min_images_per_class 5" in evaluation.description


def test_quarantine_above_the_limit_blocks_and_lists_every_file(clean_dataset: Path, tmp_path: Path) -> None:
    for index in range(5):
        (clean_dataset / "dark" / f"broken{index}.png").write_bytes(b"definitely not a png")
    evaluation = _evaluations(_validate_in_dagster(clean_dataset, tmp_path / "artifacts"))[QUARANTINE_CHECK]
    assert not evaluation.passed
    assert "5 of 65 files quarantined (7.7%); the profile allows at most 5.0%" in evaluation.description
    listed = evaluation.metadata["details"].value
    assert sorted(item["path"] for item in listed) == [f"dark/broken{index}.png" for index in range(5)]
    assert all(item["reason"].startswith("cannot be decoded") for item in listed)


def test_every_bad_input_leaves_the_raw_files_byte_identical(clean_dataset: Path, tmp_path: Path) -> None:
    (clean_dataset / "dark" / "empty.png").write_bytes(b"")
    (clean_dataset / "dark" / "text.png").write_text("not an image")
    (clean_dataset / "light" / "truncated.png").write_bytes((clean_dataset / "light" / "0.png").read_bytes()[:60])
    write_png(clean_dataset / "stray.png", np.eye(8) * 200)
    write_png(clean_dataset / "rare" / "only.png", np.eye(8) * 100)
    write_png(clean_dataset / "light" / "ünï cödé.png", np.eye(8) * 90 + 30)
    (clean_dataset / "light" / "outside.png").symlink_to(write_png(tmp_path / "elsewhere.png", np.eye(8) * 50))
    before = _tree_digest(clean_dataset)
    result = _materialize(clean_dataset, tmp_path / "artifacts")
    assert not result.success
    failed = {name: text for name, text in _descriptions(result).items() if not _checks(result)[name]}
    assert set(failed) == {CLASS_COVERAGE_CHECK}, failed
    # The root-level file and the outside symlink are skipped (listed, not images), so not counted as quarantined.
    assert _descriptions(result)[QUARANTINE_CHECK].startswith("3 of 65 files quarantined (4.6%)")
    assert "; 2 other entries skipped as not images" in _descriptions(result)[QUARANTINE_CHECK]
    assert "class 'rare' has 1 usable image(s)" in failed[CLASS_COVERAGE_CHECK]
    assert "trained_model" not in _materialized(result)
    assert _tree_digest(clean_dataset) == before


def test_a_new_label_after_the_first_accepted_run_blocks(clean_dataset: Path, tmp_path: Path) -> None:
    assert all(e.passed for e in _evaluations(_validate_in_dagster(clean_dataset, tmp_path / "a")).values())
    rng = np.random.default_rng(9)
    for index in range(30):
        write_png(clean_dataset / "medium" / f"{index}.png", 120 + rng.integers(-30, 30, (8, 8)))
    evaluation = _evaluations(_validate_in_dagster(clean_dataset, tmp_path / "a"))[LABEL_SET_CHECK]
    assert not evaluation.passed
    assert "unexpected ['medium'], missing []" in evaluation.description


def test_duplicates_warn_without_blocking_training(clean_dataset: Path, tmp_path: Path) -> None:
    (clean_dataset / "light" / "copy-of-0.png").write_bytes((clean_dataset / "light" / "0.png").read_bytes())
    result = _materialize(clean_dataset, tmp_path / "artifacts")
    evaluation = _evaluations(result)[DUPLICATES_CHECK]
    assert not evaluation.passed
    assert evaluation.severity == dg.AssetCheckSeverity.WARN
    assert evaluation.description == "Failed: 1 group(s) of identical files (0 with conflicting labels)"
    assert result.success
    assert "trained_model" in _materialized(result)
