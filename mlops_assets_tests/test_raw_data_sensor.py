from pathlib import Path

import dagster as dg
import numpy as np

from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.ingest.sensors import raw_data_sensor
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets_tests.conftest import write_png


def _evaluate(instance: dg.DagsterInstance, dataset: Path, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"dataset": FolderDatasetSource(root=str(dataset))}
    )
    return raw_data_sensor.evaluate_tick(context)


def test_sensor_requests_a_rebuild_only_when_the_data_version_changes(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    for index in range(4):
        write_png(tmp_path / "data" / "a" / f"{index}.png", rng.integers(0, 255, (6, 6)))
    dataset = tmp_path / "data"
    with dg.instance_for_test() as instance:
        first = _evaluate(instance, dataset, None)
        assert len(first.run_requests) == 1, "never materialized: rebuild"
        assert first.run_requests[0].tags["mlops/data_version"] == first.cursor == scan_dataset(dataset).data_version
        again = _evaluate(instance, dataset, first.cursor)
        assert again.run_requests == [], "the same version is requested once"

        dg.materialize([raw_images], instance=instance, resources={"dataset": FolderDatasetSource(root=str(dataset))})
        assert _evaluate(instance, dataset, None).run_requests == [], "materialized version is current"

        write_png(dataset / "a" / "new.png", rng.integers(0, 255, (6, 6)))
        changed = _evaluate(instance, dataset, first.cursor)
        assert len(changed.run_requests) == 1
        assert (
            changed.run_requests[0].tags["mlops/data_version"] == changed.cursor == scan_dataset(dataset).data_version
        )
        assert changed.cursor != first.cursor
