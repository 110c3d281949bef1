"""Watch the project's current dataset and rebuild the chain when its content changes."""

import dagster as dg

from mlops_assets.dataset_choice import DatasetChoice, reader, resolve
from mlops_assets.defs.jobs import training_pipeline_job
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.registry import ModelRegistryResource


def last_materialized_data_version(instance: dg.DagsterInstance) -> str | None:
    event = instance.get_latest_materialization_event(dg.AssetKey("raw_images"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("data_version")
    return value.value if value is not None else None


@dg.sensor(
    job=training_pipeline_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def raw_data_sensor(context: dg.SensorEvaluationContext, dataset: DatasetSource, registry: ModelRegistryResource):
    """Request a rebuild when the current dataset's data version differs from the last materialized one."""
    with registry.open() as models:
        catalog = models.datasets
        current = catalog.current()
        if current is None and not dataset.root:
            # Never the bundled sample on its own: a home where nobody chose a dataset gets no runs it did not ask for.
            return dg.SkipReason(
                "No current dataset: choose one with `mlops run --dataset NAME` (or set the operator's "
                "MLOPS_DATASET); the sample is not watched."
            )
        if current is not None and current.version is not None:
            return dg.SkipReason(f"The current dataset is pinned to {current}: a recorded version never changes.")
        # A dataset gone from the catalogue or a source that vanished fails the tick with the error's message.
        resolved = resolve(DatasetChoice(), catalog, dataset)
    data_version = reader(dataset, resolved.source).scan().data_version
    materialized = last_materialized_data_version(context.instance)
    if data_version == materialized:
        return dg.SkipReason(f"{resolved} unchanged (data version {data_version[:16]}).")
    if data_version == context.cursor:
        return dg.SkipReason(f"A rebuild for data version {data_version[:16]} of {resolved} was already requested.")
    context.update_cursor(data_version)
    return dg.RunRequest(
        run_key=f"data-{data_version}",
        tags={
            "mlops/data_version": data_version,
            "mlops/dataset": resolved.name or resolved.source,
            "mlops/reason": "dataset changed",
        },
    )
