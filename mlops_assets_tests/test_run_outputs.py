"""Asset values are kept per run: a step reads the value its own run produced, whatever another run wrote since."""

from pathlib import Path

import dagster as dg

from mlops_assets.resources.run_outputs import RunOutputsIOManager


class NumberConfig(dg.Config):
    value: int


@dg.asset
def number(config: NumberConfig) -> int:
    """A value chosen per run."""
    return config.value


def _materialize(instance: dg.DagsterInstance, io_manager: dg.IOManager, value: int) -> str:
    result = dg.materialize(
        [number],
        instance=instance,
        resources={"io_manager": io_manager},
        run_config={"ops": {"number": {"config": {"value": value}}}},
    )
    return result.run_id


def test_each_run_reads_its_own_value_and_a_later_run_the_latest(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        manager = RunOutputsIOManager(str(tmp_path / "storage"), instance)
        first = _materialize(instance, manager, 1)
        second = _materialize(instance, manager, 2)  # e.g. another run on the same home, meanwhile

        def load(upstream: dg.OutputContext) -> int:
            return manager.load_input(dg.build_input_context(asset_key=dg.AssetKey("number"), upstream_output=upstream))

        # A step of the first run loads the first run's value, although the second run wrote the asset since.
        assert load(dg.build_output_context(asset_key=dg.AssetKey("number"), run_id=first)) == 1
        # A step of a run that did not produce it loads the latest materialization's value.
        assert load(dg.build_output_context(asset_key=dg.AssetKey("number"))) == 2
        assert sorted(path.name for path in (tmp_path / "storage" / "outputs" / "number").iterdir()) == sorted(
            [first, second]
        )
        # Dagster's own IO manager, on the same folder, finds the latest value where it keeps it.
        dagsters = dg.FilesystemIOManager(base_dir=str(tmp_path / "storage")).create_io_manager(
            dg.build_init_resource_context(instance=instance)
        )
        assert dagsters.load_input(dg.build_input_context(asset_key=dg.AssetKey("number"))) == 2
        assert list((tmp_path / "storage").glob("**/.partial-*")) == []


def test_a_value_stored_by_dagsters_own_io_manager_is_still_read(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        _materialize(instance, dg.FilesystemIOManager(base_dir=str(tmp_path / "storage")), 7)
        manager = RunOutputsIOManager(str(tmp_path / "storage"), instance)
        loaded = manager.load_input(
            dg.build_input_context(
                asset_key=dg.AssetKey("number"),
                upstream_output=dg.build_output_context(asset_key=dg.AssetKey("number")),
            )
        )
        assert loaded == 7
