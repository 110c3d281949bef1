"""What the UI shows of a materialization names its files relative to MLOPS_HOME (or as URLs): no metadata entry of
raw_images, validated_images or their checks holds the home's absolute path, and each relative path opens the file."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.metadata import resolve_home_path
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.defs.validation.checks import DESCRIPTIONS, validated_images_quality
from mlops_assets.lib.data.validated_data import BASELINE_FILE, QUARANTINE_FILE
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.fixed import instance_storage_io_manager
from mlops_assets_tests.conftest import write_png
from mlops_assets_tests.dataset_resources import dataset_store_under, registry_under


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _paths(metadata: dict[str, dg.MetadataValue]) -> dict[str, str]:
    return {key: value.value for key, value in metadata.items() if isinstance(value, dg.PathMetadataValue)}


def test_materializations_and_checks_show_paths_relative_to_the_home(home: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    for label, base in (("dark", 40), ("light", 200)):
        for index in range(6):
            write_png(tmp_path / "data" / label / f"{index}.png", base + rng.integers(-30, 30, (8, 8)))
    artifacts = home / "artifacts"
    (home / "dagster").mkdir(parents=True)
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        result = dg.materialize(
            [raw_images, validated_images, validated_images_quality],
            instance=instance,
            resources={
                "dataset": FolderDatasetSource(root=str(tmp_path / "data")),
                "artifacts": LocalArtifactStore(root=str(artifacts)),
                "dataset_store": dataset_store_under(home),
                "registry": registry_under(home),
                # The project's own: step outputs per run under the instance's storage (Dagster adds their `path`).
                "io_manager": instance_storage_io_manager,
            },
        )
    materialized = {
        event.asset_key.to_user_string(): event.materialization.metadata
        for event in result.get_asset_materialization_events()
    }
    checks = {evaluation.check_name: evaluation.metadata for evaluation in result.get_asset_check_evaluations()}
    assert (set(materialized), set(checks)) == ({"raw_images", "validated_images"}, set(DESCRIPTIONS))

    # The dataset folder is the operator's, outside the home: shown as it is.
    outputs = {name: f"dagster/storage/outputs/{name}/{result.run_id}" for name in materialized}
    assert _paths(materialized["raw_images"]) == {
        "dataset_root": str(tmp_path / "data"),
        "dataset_store": "dataset-store",
        "path": outputs["raw_images"],
    }
    shown = _paths(materialized["validated_images"])
    assert set(shown) == {"storage_path", "stored_at", "quarantine_report", "baseline_statistics", "data_docs", "path"}
    stored = shown["storage_path"]
    assert stored.startswith("artifacts/validated_images/")
    assert shown == {
        "storage_path": stored,
        "stored_at": stored,
        "quarantine_report": f"{stored}/{QUARANTINE_FILE}",
        "baseline_statistics": f"{stored}/{BASELINE_FILE}",
        "data_docs": shown["data_docs"],
        "path": outputs["validated_images"],
    }
    assert shown["data_docs"].startswith(f"{stored}/") and shown["data_docs"].endswith(".html")
    for path in shown.values():
        assert resolve_home_path(path).exists(), path
    assert {name: _paths(metadata) for name, metadata in checks.items()} == {
        name: {"data_docs": shown["data_docs"]} for name in DESCRIPTIONS
    }
    everything = [*materialized.values(), *checks.values()]
    assert [entry for metadata in everything for entry in metadata.values() if str(home) in str(entry)] == []
