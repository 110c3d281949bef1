"""Retrain on severe drift; alert on failed runs, on candidates that lost the gate and on alert-label inputs."""

import json
from pathlib import Path

import dagster as dg

from mlops_assets import settings
from mlops_assets.defs.jobs import training_pipeline_job
from mlops_assets.defs.monitoring import alerting
from mlops_assets.defs.monitoring.assets import MONITORING_ASSET
from mlops_assets.defs.promotion.checks import PROMOTION_GATE_CHECK
from mlops_assets.lib.monitoring.alert_inputs import AlertInput, new_alert_inputs, parse_cursor
from mlops_assets.lib.monitoring.alerts import ALERT_LABEL, GATE_LOST, RUN_FAILED, Alert, AlertDeliveryError
from mlops_assets.lib.monitoring.capture import ALERT_INPUTS
from mlops_assets.lib.monitoring.verdicts import SEVERE_DRIFT
from mlops_assets.lib.serving.prediction_store import UNSTAGED, substore
from mlops_assets.resources.prediction_logs import PredictionLogs

DRIFT_REASON = "severe drift"

# The stages whose severe drift requests retraining: the traffic of real users. Staging is left out on purpose: it
# exists to be tried with odd inputs (shifted test images), so its drift says nothing about the model's users; its
# severe drift still fails its check and alerts, so a person sees it.
RETRAINING_STAGES = ("production", UNSTAGED)


# Materializations of prediction_monitoring read per tick at most (the rest on the next tick, from the cursor).
DRIFT_EVENTS_PER_TICK = 100


def _metadata_value(entry: dg.EventLogEntry, key: str) -> object:
    value = entry.asset_materialization.metadata.get(key) if entry.asset_materialization else None
    return getattr(value, "value", value)


def _retraining_request(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry) -> dg.RunRequest | str:
    """The retraining request for one materialization of prediction_monitoring, or why there is none."""
    overall = _metadata_value(asset_event, "overall")
    day, version = _metadata_value(asset_event, "day"), _metadata_value(asset_event, "model_version")
    # Materializations from before stages were graded carry no stage: they graded every server's traffic.
    stage = str(_metadata_value(asset_event, "stage") or UNSTAGED)
    if overall != SEVERE_DRIFT:
        return f"prediction_monitoring for {day} in {stage}: {overall}; nothing to retrain for."
    if stage not in RETRAINING_STAGES:
        skipped = (
            f"Severe drift on {day} in {stage} (version {version}) not retrained for: only drift in "
            f"{' and '.join(RETRAINING_STAGES)} requests retraining ({stage} is tried with odd inputs on purpose); "
            "its check failed and it was alerted."
        )
        context.log.info(skipped)
        return skipped
    environment = str(_metadata_value(asset_event, "environment") or settings.environment_name())
    if not settings.environment_settings(environment).monitoring.retrain_on_severe_drift:
        return (
            f"Severe drift on {day} in {stage} (version {version}), but monitoring.retrain_on_severe_drift is off "
            f"in {environment}."
        )
    signals = str(_metadata_value(asset_event, "severe_signals"))
    context.log.info(
        f"Severe drift on {day} in {stage} for version {version} ({signals}): requesting a retraining run."
    )
    return dg.RunRequest(
        # One retraining per day and version, however often the day is monitored again and in however many stages
        # it drifted.
        run_key=f"severe-drift-{day}-v{version}",
        tags={
            "mlops/reason": DRIFT_REASON,
            "mlops/monitored_day": str(day),
            "mlops/monitored_stage": stage,
            "mlops/monitored_version": str(version),
            "mlops/severe_signals": signals[:200],
        },
    )


@dg.sensor(
    name="drift_sensor",
    job=training_pipeline_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def drift_sensor(context: dg.SensorEvaluationContext):
    """Request retraining on severe drift in production (or unstaged servers), once per day and version; not staging."""
    # Every materialization since the cursor (the storage id of the last one read), oldest first: stages are graded
    # side by side, so the latest alone (an asset sensor's view) could hide another stage's severe drift.
    after = int(context.cursor) if context.cursor and context.cursor.isdigit() else None
    found = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(MONITORING_ASSET), after_storage_id=after),
        limit=DRIFT_EVENTS_PER_TICK,
        ascending=True,
    ).records
    if not found:
        return dg.SkipReason(f"No new materialization of {MONITORING_ASSET}.")
    outcomes = [_retraining_request(context, record.event_log_entry) for record in found]
    context.update_cursor(str(found[-1].storage_id))
    requests = [outcome for outcome in outcomes if isinstance(outcome, dg.RunRequest)]
    if requests:
        return requests
    return dg.SkipReason(" ".join(outcomes))


def _failed_gate(instance: dg.DagsterInstance, run_id: str) -> str | None:
    """The failed promotion gate's description when that is why the run failed, else None."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.check_name == PROMOTION_GATE_CHECK and not evaluation.passed:
            return evaluation.description or "the candidate did not beat production"
    return None


def failure_alert(context: dg.RunFailureSensorContext, environment: str) -> Alert:
    """The alert for a failed run: a candidate that lost the gate, or the run's failure."""
    run = context.dagster_run
    details = {"run_id": run.run_id, "job": run.job_name, "tags": dict(run.tags)}
    gate = _failed_gate(context.instance, run.run_id)
    if gate is not None:
        return Alert(
            GATE_LOST,
            f"Candidate lost the promotion gate in run {run.run_id[:8]}: {gate}",
            environment,
            {**details, "gate": gate},
            event_id=f"run-failed-{run.run_id}",
        )
    message = context.failure_event.message or "see the run in the Dagster UI"
    return Alert(
        RUN_FAILED,
        f"Run {run.run_id[:8]} of {run.job_name} failed: {message}",
        environment,
        {**details, "failure": message},
        event_id=f"run-failed-{run.run_id}",
    )


@dg.run_failure_sensor(name="run_failure_alert_sensor", default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext) -> None:
    """Alert on every failed run of this code location; a run whose candidate lost the gate says so."""
    delivery = alerting.send(failure_alert(context, settings.environment_name()))
    # Raised, so the tick fails visibly and is retried; the alert is keyed by the run, so a retry posts it again
    # only while it has not been delivered, and keeps one line for it in the alert log.
    delivery.raise_for_failure()


def alert_label_alert(found: AlertInput, saved: Path, kept_in: str, environment: str) -> Alert:
    """The alert for one input predicted as an alert label at or above its confidence."""
    record = found.record
    return Alert(
        ALERT_LABEL,
        f"{record['label']!r} predicted with confidence {float(record['confidence']):.4f} (alert at "
        f"{float(record['alert_confidence']):g}) by {record['model_version']}; input saved at {saved}",
        environment,
        {**record, "input": str(saved), "kept_in": f"{kept_in} ({found.source})"},
        event_id=found.event_id,
    )


@dg.sensor(name="alert_label_sensor", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def alert_label_sensor(context: dg.SensorEvaluationContext, prediction_logs: PredictionLogs) -> dg.SkipReason:
    """Alert once per input the service kept for an alert label (monitoring.capture.alert_labels), with its file."""
    store = substore(prediction_logs.store(), ALERT_INPUTS)
    found, cursor, problems = new_alert_inputs(store, parse_cursor(context.cursor))
    for problem in problems:
        context.log.warning(f"Alert input skipped: {problem}")
    environment = settings.environment_name()
    folder = alerting.alert_log_path().parent / "inputs"
    failed = []
    for each in found:
        delivery = alerting.send(alert_label_alert(each, each.save(folder), str(store), environment))
        failed += [f"{each.event_id}: {delivery.error}"] if delivery.error else []
    if failed:
        # The cursor stays: the next tick reads these inputs again, and alerts already delivered are not sent twice
        # (their event ids are in the alert log).
        raise AlertDeliveryError(f"{len(failed)} alert-label alert(s) not delivered: {'; '.join(failed[:3])}")
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    return dg.SkipReason(f"{len(found)} alert-label alert(s) sent; {len(problems)} kept input(s) unusable.")
