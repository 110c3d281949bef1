"""The blocking Great Expectations checks run inside Dagster and stop training on bad data."""

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlops_assets.defs.evaluation.assets import model_evaluation
from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.training.assets import trained_model
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.defs.validation.checks import CLASS_COVERAGE_CHECK, IMAGES_DECODABLE_CHECK, validated_images_quality
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.registry import ModelRegistryResource
from mlops_assets_tests.conftest import write_png

FAST_TRAINING = {"ops": {"trained_model": {"config": {"epochs": 2}}}}


def _materialize(dataset: Path, artifacts: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_images, validated_images, trained_model, model_evaluation, validated_images_quality],
        resources={
            "dataset": DatasetSource(root=str(dataset)),
            "artifacts": LocalArtifactStore(root=str(artifacts)),
            "registry": ModelRegistryResource(url=f"sqlite:///{artifacts}/registry.db"),
        },
        run_config=FAST_TRAINING,
        raise_on_error=False,
    )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {evaluation.check_name: evaluation.passed for evaluation in result.get_asset_check_evaluations()}


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
    assert all(_checks(result).values()), _checks(result)
    assert {"trained_model", "model_evaluation"} <= _materialized(result)


def test_a_class_with_too_few_images_blocks_training(clean_dataset: Path, tmp_path: Path) -> None:
    write_png(clean_dataset / "rare" / "only.png", np.full((8, 8), 120) + np.eye(8) * 50)
    result = _materialize(clean_dataset, tmp_path / "artifacts")
    assert not result.success
    assert _checks(result)[CLASS_COVERAGE_CHECK] is False
    assert "validated_images" in _materialized(result)
    assert "trained_model" not in _materialized(result)


def test_many_undecodable_files_block_training(clean_dataset: Path, tmp_path: Path) -> None:
    for index in range(5):
        (clean_dataset / "dark" / f"broken{index}.png").write_bytes(b"definitely not a png")
    result = _materialize(clean_dataset, tmp_path / "artifacts")
    assert _checks(result)[IMAGES_DECODABLE_CHECK] is False
    assert "trained_model" not in _materialized(result)
