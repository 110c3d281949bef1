"""Step outputs kept per run, so runs on one home never load each other's values."""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path
from typing import Any

import dagster as dg
from upath import UPath

from mlops_assets import settings
from mlops_assets.lib.atomic import atomic_write_bytes

OUTPUTS_DIR = "outputs"


class RunOutputsIOManager(dg.UPathIOManager):
    """Asset values pickled under the run that produced them: `<base_dir>/outputs/<asset key>/<run id>`.

    Dagster's own filesystem IO manager keeps one file per asset (`<base_dir>/<asset key>`): a run on the same home
    overwrites it between another run's step that wrote it and the next step that reads it, which then trains on the
    other run's data. Here a step reads its input from the run that produced it: its own run when the upstream step
    ran there, otherwise the asset's latest materialization (or, for a value stored before values were kept per run,
    the old single file, which is still written for code that loads assets with Dagster's own IO manager). Values are
    written whole (a partial file renamed into place), so a killed run never leaves a truncated pickle for a later
    run to load.
    """

    extension = ""

    def __init__(self, base_dir: str, instance: dg.DagsterInstance) -> None:
        super().__init__(base_path=UPath(base_dir))
        self.base_dir = Path(base_dir)
        self.instance = instance

    def get_asset_relative_path(self, context: dg.InputContext | dg.OutputContext) -> UPath:
        kept = Path(OUTPUTS_DIR, *context.asset_key.path)
        if isinstance(context, dg.OutputContext):
            return UPath(kept / context.run_id)
        run_id = self._producing_run(context)
        if run_id is not None and (self.base_dir / kept / run_id).exists():
            return UPath(kept / run_id)
        return UPath(*context.asset_key.path)  # stored by Dagster's own IO manager, before values were kept per run

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        data = pickle.dumps(obj)
        atomic_write_bytes(Path(str(path)), data)
        # Also where Dagster's own IO manager keeps the latest value, for code that loads assets with it.
        atomic_write_bytes(self.base_dir.joinpath(*context.asset_key.path), data)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> Any:
        with path.open("rb") as stream:
            return pickle.load(stream)

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict[str, dg.MetadataValue]:
        """The value's file as the UI shows every path: relative to MLOPS_HOME (Dagster's own `path` is absolute)."""
        if obj is None:
            return {}  # Dagster shows no `path` for a step that returned nothing
        path = Path(str(written_path(self, context)))
        with contextlib.suppress(ValueError):  # a storage folder outside the home is shown as it is
            path = path.resolve().relative_to(settings.mlops_home())
        return {"path": dg.MetadataValue.path(str(path))}

    def _producing_run(self, context: dg.InputContext) -> str | None:
        return producing_run(context, self.instance)


def producing_run(context: dg.InputContext, instance: dg.DagsterInstance) -> str | None:
    """The run whose value of the input's asset a step reads (None: the asset was never materialized): its own run
    when the upstream step ran there, otherwise the run of the asset's latest materialization."""
    upstream = context.upstream_output
    try:
        return upstream.run_id if upstream is not None else None  # the upstream step ran in this run
    except dg.DagsterInvariantViolationError:
        pass  # loaded from storage: not produced in this run
    event = instance.get_latest_materialization_event(context.asset_key)
    return event.run_id if event is not None else None


def written_path(manager: dg.UPathIOManager, context: dg.OutputContext) -> UPath:
    """Where `manager.handle_output` writes the output (dagster is pinned exactly: its own private helpers)."""
    if context.has_asset_partitions:
        return next(iter(manager._get_paths_for_partitions(context).values()))  # noqa: SLF001
    return manager._get_path(context)  # noqa: SLF001
