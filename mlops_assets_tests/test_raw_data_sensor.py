"""The raw-data sensor follows the project's current dataset, and never starts runs nobody asked for."""

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.ingest.sensors import raw_data_sensor
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.registry import ModelRegistryResource
from mlops_assets_tests.conftest import write_png
from mlops_assets_tests.dataset_resources import dataset_store_under


def _folder(root: Path, seed: int, count: int = 4) -> Path:
    rng = np.random.default_rng(seed)
    for index in range(count):
        write_png(root / "a" / f"{index}.png", rng.integers(0, 255, (6, 6)))
    return root


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistryResource:
    return ModelRegistryResource(url=f"sqlite:///{tmp_path}/registry.db")


def _evaluate(instance, registry: ModelRegistryResource, cursor: str | None, operator_root: str = ""):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"dataset": FolderDatasetSource(root=operator_root), "registry": registry},
    )
    return raw_data_sensor.evaluate_tick(context)


def _own_tags(request: dg.RunRequest) -> dict[str, str]:
    """The tags the sensor sets (Dagster adds its own, e.g. the sensor's name)."""
    return {key: value for key, value in request.tags.items() if not key.startswith("dagster/")}


def _catalogue(registry: ModelRegistryResource) -> ModelRegistry:
    return registry.open()


def test_without_a_chosen_dataset_the_sensor_requests_nothing(registry: ModelRegistryResource) -> None:
    with dg.instance_for_test() as instance:
        tick = _evaluate(instance, registry, None)
    assert tick.run_requests == []
    assert tick.skip_message == (
        "No current dataset: choose one with `mlops run --dataset NAME` (or set the operator's MLOPS_DATASET); the "
        "sample is not watched."
    )


def test_the_sensor_watches_the_current_dataset_not_the_operators_folder(
    registry: ModelRegistryResource, tmp_path: Path
) -> None:
    chosen, other = _folder(tmp_path / "chosen", seed=1), _folder(tmp_path / "other", seed=2)
    with _catalogue(registry) as models:
        models.datasets.add("chosen", str(chosen), actor="test")
        models.datasets.set_current("test", name="chosen")
    resources = {
        "dataset": FolderDatasetSource(root=str(other)),
        "dataset_store": dataset_store_under(tmp_path),
        "registry": registry,
    }
    with dg.instance_for_test() as instance:
        first = _evaluate(instance, registry, None, operator_root=str(other))
        assert [_own_tags(request) for request in first.run_requests] == [
            {
                "mlops/data_version": scan_dataset(chosen).data_version,
                "mlops/dataset": "chosen",
                "mlops/reason": "dataset changed",
            }
        ]
        assert first.cursor == scan_dataset(chosen).data_version
        again = _evaluate(instance, registry, first.cursor, operator_root=str(other))
        assert again.run_requests == []
        assert again.skip_message.startswith("A rebuild for data version")

        # A run of the current dataset (raw_images' default config) materializes exactly that version.
        dg.materialize([raw_images], instance=instance, resources=resources)
        settled = _evaluate(instance, registry, first.cursor, operator_root=str(other))
        assert settled.run_requests == []
        assert settled.skip_message == (
            f"chosen ({chosen}) unchanged (data version {scan_dataset(chosen).data_version[:16]})."
        )

        write_png(chosen / "a" / "new.png", np.full((6, 6), 7))
        changed = _evaluate(instance, registry, first.cursor, operator_root=str(other))
        assert [request.tags["mlops/data_version"] for request in changed.run_requests] == [
            scan_dataset(chosen).data_version
        ]


def test_the_operators_folder_is_watched_while_no_dataset_is_chosen(
    registry: ModelRegistryResource, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "data", seed=3)
    with dg.instance_for_test() as instance:
        tick = _evaluate(instance, registry, None, operator_root=str(folder))
    assert [request.tags["mlops/dataset"] for request in tick.run_requests] == [str(folder)]
    assert tick.cursor == scan_dataset(folder).data_version


def test_a_pinned_current_version_never_changes_so_nothing_is_requested(
    registry: ModelRegistryResource, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "data", seed=4)
    with _catalogue(registry) as models:
        models.datasets.add("pinned", str(folder), actor="test")
        models.datasets.record_version("pinned", str(folder), "e" * 64, 4, {"a": 4}, 100, "test")
        models.datasets.set_current("test", name="pinned", version=1)
    with dg.instance_for_test() as instance:
        tick = _evaluate(instance, registry, None)
    assert tick.run_requests == []
    assert tick.skip_message == "The current dataset is pinned to pinned@1: a recorded version never changes."
