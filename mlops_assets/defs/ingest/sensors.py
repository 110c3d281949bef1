"""Watch the dataset folder and rebuild the chain when its content changes."""

import dagster as dg

from mlops_assets.defs.jobs import training_pipeline_job
from mlops_assets.resources.dataset import DatasetSource


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
def raw_data_sensor(context: dg.SensorEvaluationContext, dataset: DatasetSource):
    """Request a rebuild when the dataset folder's data version differs from the last materialized one."""
    current = dataset.scan().data_version
    materialized = last_materialized_data_version(context.instance)
    if current == materialized:
        return dg.SkipReason(f"Dataset unchanged (data version {current[:16]}).")
    if current == context.cursor:
        return dg.SkipReason(f"A rebuild for data version {current[:16]} was already requested.")
    context.update_cursor(current)
    return dg.RunRequest(
        run_key=f"data-{current}",
        tags={"mlops/data_version": current, "mlops/reason": "dataset changed"},
    )
