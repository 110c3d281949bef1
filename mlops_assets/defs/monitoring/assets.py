"""Monitoring: each model's baseline, and each day's logged predictions graded against it, signal by signal."""

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pydantic

from mlops_assets.defs.groups import MONITORING, presentation
from mlops_assets.defs.metadata import home_path, markdown_table, png_markdown
from mlops_assets.defs.monitoring import alerting
from mlops_assets.defs.versioning import own_code_version
from mlops_assets.lib.atomic import atomic_directory
from mlops_assets.lib.data.validated_data import ValidatedDataset
from mlops_assets.lib.deploy.release import DeploymentError, DeploymentRecord
from mlops_assets.lib.models.training import TrainedModel
from mlops_assets.lib.monitoring import alerts
from mlops_assets.lib.monitoring.accuracy import live_accuracy, unmatched_feedback, unmatched_note
from mlops_assets.lib.monitoring.baseline import (
    BASELINE_FILE,
    DamagedBaseline,
    MonitoringBaseline,
    build_monitoring_baseline,
    check_baseline_files,
    load_monitoring_baseline,
)
from mlops_assets.lib.monitoring.capture import FEEDBACK, feedback_given_on, read_feedback
from mlops_assets.lib.monitoring.comparison import compare_deployment
from mlops_assets.lib.monitoring.logs import PredictionLogReader, read_day
from mlops_assets.lib.monitoring.monitor import DayAssessment, MonitoredVersion, assess_day
from mlops_assets.lib.monitoring.plots import drift_png
from mlops_assets.lib.monitoring.settings import MonitoringSettings
from mlops_assets.lib.monitoring.verdicts import COMPARED, DRIFT, NO_DRIFT, SEVERE_DRIFT
from mlops_assets.lib.registry.registry import RegistryError
from mlops_assets.lib.serving.prediction_store import LOG_STAGES, UNSTAGED, substore
from mlops_assets.resources.artifacts import ArtifactStore
from mlops_assets.resources.prediction_logs import PredictionLogs
from mlops_assets.resources.registry import ModelRegistryResource

BASELINE_KIND = "monitoring_baseline"
REPORT_KIND = "prediction_monitoring"
REPORT_FILE = "report.html"
MONITORING_ASSET = "prediction_monitoring"
NO_DRIFT_CHECK = "no_drift"
NO_SEVERE_DRIFT_CHECK = "no_severe_drift"
DAY_DIMENSION = "day"
STAGE_DIMENSION = "stage"
# Days are UTC, as the service names its log files. Today's partition exists (end_offset=1) so the current, partial
# day can be monitored too. Each day is graded per deployment stage (`staging`, `production`, and `unstaged`: servers
# started outside a deployment stage), so one stage's traffic never moves another's verdict.
MONITORING_DAYS = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
MONITORING_STAGES = dg.StaticPartitionsDefinition(list(LOG_STAGES))
MONITORING_PARTITIONS = dg.MultiPartitionsDefinition(
    {DAY_DIMENSION: MONITORING_DAYS, STAGE_DIMENSION: MONITORING_STAGES}
)


def monitoring_partition(day: dt.date | str, stage: str) -> dg.MultiPartitionKey:
    """The partition of `day` (a date or YYYY-MM-DD) and deployment `stage`."""
    text = day if isinstance(day, str) else day.isoformat()
    return dg.MultiPartitionKey({DAY_DIMENSION: text, STAGE_DIMENSION: stage})


def partition_day_and_stage(key: str) -> tuple[dt.date, str]:
    """The day and stage of a monitoring partition key (`<YYYY-MM-DD>|<stage>`, as Dagster writes it)."""
    keys = MONITORING_PARTITIONS.get_partition_key_from_str(key).keys_by_dimension
    return dt.date.fromisoformat(keys[DAY_DIMENSION]), keys[STAGE_DIMENSION]


@dg.asset(
    **presentation(MONITORING),
    kinds={"python"},
    automation_condition=dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed(),
)
def monitoring_baseline(
    context: dg.AssetExecutionContext,
    trained_model: TrainedModel,
    validated_images: ValidatedDataset,
    artifacts: ArtifactStore,
) -> dg.MaterializeResult:
    """The trained model's monitoring baseline: training-split input statistics and held-out predictions."""
    code_version = own_code_version(context)
    key = trained_model.weights_sha256
    stored = artifacts.fetch(BASELINE_KIND, key)
    baseline = None
    if stored is not None and (stored / BASELINE_FILE).is_file():
        try:
            found = load_monitoring_baseline(stored)
            check_baseline_files(found)
        except DamagedBaseline as damage:
            # Rebuilt below, replacing the damaged copy.
            context.log.warning(f"Stored baseline {stored}: {damage}")
        else:
            baseline = found if found.code_version == code_version else None
    cache_hit = baseline is not None
    if baseline is None:
        trained_model = artifacts.local_copy(trained_model, "trained_model")
        validated_images = artifacts.local_copy(validated_images, "validated_images")
        with artifacts.publishing(BASELINE_KIND, key) as destination:
            baseline = build_monitoring_baseline(
                validated_images, Path(trained_model.directory), key, code_version, destination
            )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(f"{key[:32]}-{code_version[:16]}"),
        metadata={
            "cache_hit": cache_hit,
            "weights_sha256": key,
            "data_version": baseline.data_version,
            "reference_inputs": baseline.num_inputs,
            "reference_predictions": baseline.num_predictions,
            "stored_at": home_path(artifacts.uri(BASELINE_KIND, key)),
        },
    )


class MonitoringConfig(dg.Config):
    """Which registry version's traffic to grade."""

    version: int = pydantic.Field(
        default=0,
        ge=0,
        description="Registry version to monitor: an integer >= 1; 0: the version live in the partition's stage "
        "(unstaged: the environment's production version).",
    )


def _live_in_stage(environment: str, stage: str) -> tuple[DeploymentRecord | None, str]:
    """What is live in deployment `stage` (None for `unstaged`, or when nothing is deployed there), or None and why
    it could not be read."""
    from mlops_assets import settings
    from mlops_assets.resources.deployer import deployer_for

    if stage == UNSTAGED:
        return None, ""
    try:
        return deployer_for(stage, settings.environment_settings(environment)).status(), ""
    except DeploymentError as error:
        return None, f"what is live in {stage} could not be read: {error}"


def _monitored_version(
    registry: ModelRegistryResource, number: int, stage: str, live: DeploymentRecord | None, live_problem: str
) -> tuple[MonitoredVersion | None, str]:
    """The version to monitor in `stage` (config `version`, else the version `live` there, else for `unstaged` the
    registry's production version), or None and why there is none."""
    environment = registry.environment
    if not number and stage != UNSTAGED:
        if live_problem:
            return None, f"{live_problem}; monitor a version by number (config `version`)"
        if live is None:
            return None, (
                f"nothing is deployed in {stage} in {environment}; deploy a version (`mlops deploy {stage}`) or "
                "monitor a version by number (config `version`)"
            )
        number = live.model_version
    with registry.open() as models:
        try:
            view = models.version(number) if number else models.production()
        except RegistryError as error:
            return None, str(error)
    if view is None:
        return None, (
            f"no version is in production in {environment}; promote one (`mlops models promote N`) or "
            "monitor a version by number (config `version`)"
        )
    return MonitoredVersion(view.number, view.model_tag, view.weights_sha256), ""


def _baseline(artifacts: ArtifactStore, version: MonitoredVersion | None) -> tuple[MonitoringBaseline | None, str]:
    """The version's stored baseline (None without one), or None and which file is damaged and why."""
    if version is None:
        return None, ""
    stored = artifacts.fetch(BASELINE_KIND, version.weights_sha256)
    if stored is None or not (stored / BASELINE_FILE).is_file():
        return None, ""
    try:
        baseline = load_monitoring_baseline(stored)
        check_baseline_files(baseline)
    except DamagedBaseline as damage:
        return None, str(damage)
    return baseline, ""


def _check_results(assessment: DayAssessment) -> list[dg.AssetCheckResult]:
    """`no_drift` (a warning) fails on any drift; `no_severe_drift` fails (an error) on severe drift. A day that could
    not be compared fails both as a warning: it is not a day without drift."""
    overall = assessment.overall
    flagged = [v for v in assessment.verdicts if v.verdict in (DRIFT, SEVERE_DRIFT)]
    named = "; ".join(v.describe() for v in flagged)
    reason = assessment.verdicts[0].detail if overall not in COMPARED else ""
    if overall in COMPARED:
        drift_text = "no signal drifted" if overall == NO_DRIFT else named
        severe = [v for v in flagged if v.verdict == SEVERE_DRIFT]
        severe_text = "; ".join(v.describe() for v in severe) if severe else "no signal drifted severely"
        return [
            dg.AssetCheckResult(
                check_name=NO_DRIFT_CHECK,
                passed=overall == NO_DRIFT,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"{overall}: {drift_text}",
            ),
            dg.AssetCheckResult(
                check_name=NO_SEVERE_DRIFT_CHECK,
                passed=overall != SEVERE_DRIFT,
                severity=dg.AssetCheckSeverity.ERROR,
                description=f"{'severe drift' if severe else 'no severe drift'}: {severe_text}",
            ),
        ]
    return [
        dg.AssetCheckResult(
            check_name=name, passed=False, severity=dg.AssetCheckSeverity.WARN, description=f"{overall}: {reason}"
        )
        for name in (NO_DRIFT_CHECK, NO_SEVERE_DRIFT_CHECK)
    ]


def _verdict_table(assessment: DayAssessment) -> dg.MarkdownMetadataValue:
    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    return markdown_table(
        ["signal", "verdict", "statistic", "method", "drift at", "severe at", "detail"],
        [
            [
                v.signal,
                v.verdict,
                number(v.statistic),
                v.method or "-",
                number(v.drift_threshold),
                number(v.severe_threshold),
                v.detail.replace("|", "/") or "-",
            ]
            for v in assessment.verdicts
        ],
    )


def _service_url(environment: str, stage: str, live: DeploymentRecord | None) -> tuple[str, str]:
    """The URL whose /metrics counts `stage`'s requests, or '' and why there is none: for `unstaged`, the server
    `mlops deploy local` started (local environment); for a stage, its main URL when its target is local (a Cloud
    Run service's instances each count their own requests; Cloud Run's metrics have the totals)."""
    if stage == UNSTAGED:
        from mlops_assets.resources.local_deployer import current_deployment

        deployment = current_deployment() if environment == "local" else None
        if deployment is None:
            return "", f"not read: no {environment} server deployed from this machine (`mlops deploy local`)"
        return deployment.url, ""
    if live is None:
        return "", f"not read: nothing is deployed in {stage}"
    if live.target != "local":
        return "", f"not read: {stage} runs on {live.target}, whose instances each count their own requests"
    return live.url, ""


def _service_figures(environment: str, stage: str, day: dt.date, live: DeploymentRecord | None) -> dict[str, object]:
    """The request, error and latency figures of the server(s) of `stage` when `day` is today (their counters run
    since they started, so a past day has none), else why there are none."""
    import httpx

    from mlops_assets.lib.monitoring.service_metrics import read_service_metrics

    if day != dt.datetime.now(dt.UTC).date():
        return {"service": "not read: the service's counters run since it started, so only today's partition has them"}
    url, why_not = _service_url(environment, stage, live)
    if not url:
        return {"service": why_not}
    try:
        figures = read_service_metrics(url)
    except httpx.HTTPError as error:
        return {"service": f"not read: {url}/metrics failed ({type(error).__name__}: {error})"}
    metadata: dict[str, object] = {
        "service": figures.describe(),
        "service_requests": figures.requests,
        "service_client_errors": figures.client_errors,
        "service_server_errors": figures.server_errors,
    }
    if figures.latency_p50_s is not None:
        metadata["service_latency_p50_s"] = figures.latency_p50_s
        metadata["service_latency_p95_s"] = figures.latency_p95_s
    return metadata


def _comparison_metadata(
    store: PredictionLogReader,
    version: MonitoredVersion | None,
    day: dt.date,
    stage: str,
    monitoring: MonitoringSettings,
) -> dict[str, object]:
    """The deployment comparison within `stage` (its verdict line and its details: switch, windows, counts,
    signals) as metadata."""
    now = dt.datetime.now(dt.UTC)
    comparison = compare_deployment(store, version.model_tag if version else None, day, monitoring, now, stage)
    return {
        "deployment_comparison": comparison.describe(),
        "deployment_comparison_signals": dg.MetadataValue.json(comparison.to_dict()),
    }


def delivery_text(delivery: alerts.Delivery, event_id: str) -> str:
    """What became of an alert, in words: why it failed, that its event was sent before (a day graded again), or
    where it went."""
    if delivery.error:
        return delivery.error
    if delivery.duplicate:
        return f"already sent (event {event_id}); not sent again"
    return f"sent to {delivery.log_path}" + (f" and {delivery.webhook}" if delivery.webhook else "")


def _severe_drift_alert(environment: str, stage: str, assessment: DayAssessment, report: str) -> alerts.Alert:
    version = assessment.version
    severe = [v.describe() for v in assessment.verdicts if v.verdict == SEVERE_DRIFT]
    return alerts.Alert(
        kind=alerts.SEVERE_DRIFT,
        title=f"Severe drift in {stage} on {assessment.day} for version {version.number} ({version.model_tag}): "
        + "; ".join(severe),
        environment=environment,
        details={
            "stage": stage,
            "day": assessment.day.isoformat(),
            "model_version": version.number,
            "model_tag": version.model_tag,
            "num_predictions": assessment.num_predictions,
            "signals": [v.to_dict() for v in assessment.verdicts if v.verdict == SEVERE_DRIFT],
            "report": report,
        },
        # Once per environment, stage, day and version, however often the day is graded again.
        event_id=f"severe-drift-{environment}-{stage}-{assessment.day.isoformat()}-v{version.number}",
    )


@dg.asset(
    partitions_def=MONITORING_PARTITIONS,
    **presentation(MONITORING),
    # Evidently has no icon in the UI; its output is a report.
    kinds={"evidently", "report"},
    deps=[monitoring_baseline],
    check_specs=[
        dg.AssetCheckSpec(
            NO_DRIFT_CHECK,
            asset=MONITORING_ASSET,
            description="Warns when any signal drifted, or when the day could not be compared with a baseline.",
        ),
        dg.AssetCheckSpec(
            NO_SEVERE_DRIFT_CHECK,
            asset=MONITORING_ASSET,
            description="Fails when any signal drifted severely (the drift sensor then requests retraining).",
        ),
    ],
)
def prediction_monitoring(
    context: dg.AssetExecutionContext,
    config: MonitoringConfig,
    registry: ModelRegistryResource,
    artifacts: ArtifactStore,
    prediction_logs: PredictionLogs,
) -> dg.MaterializeResult:
    """One day's logged predictions of one deployment stage, graded against the baseline of the version live there."""
    from mlops_assets import settings

    environment = registry.environment
    monitoring = settings.environment_settings(environment).monitoring
    day, stage = partition_day_and_stage(context.partition_key)
    live, live_problem = _live_in_stage(environment, stage)
    version, no_version_reason = _monitored_version(registry, config.version, stage, live, live_problem)
    store = prediction_logs.store()
    log = read_day(store, day, stage)
    # Feedback names requests, not stages: labels are joined with this stage's records by request id, and a label
    # counts as unmatched only when no stage logged its request.
    accuracy = live_accuracy(log.records, read_feedback(substore(store, FEEDBACK)))
    every_stage = read_day(store, day)
    unmatched = unmatched_feedback(every_stage, feedback_given_on(substore(store, FEEDBACK), day))
    baseline, damage = _baseline(artifacts, version)
    assessment = assess_day(log, version, baseline, monitoring, no_version_reason, damage)
    metadata: dict[str, object] = {
        "environment": environment,
        "stage": stage,
        "day": day.isoformat(),
        "overall": assessment.overall,
        "model_version": version.number if version else 0,
        "model_tag": version.model_tag if version else "",
        "num_predictions": assessment.num_predictions,
        "other_versions": dg.MetadataValue.json(assessment.other_versions),
        "log_files": len(log.files),
        "log_source": prediction_logs.where(),
        "log_problems": "; ".join(assessment.log_problems) or "none",
        "bad_log_lines": log.num_bad_lines,
        # Of every model version in the day's log, where feedback gave true labels.
        "live_accuracy": dg.MetadataValue.json([found.to_dict() for found in accuracy]),
        "live_accuracy_verdict": "; ".join(
            [
                *(found.describe() for found in accuracy),
                *([unmatched_note(unmatched, day)] if unmatched else []),
            ]
        )
        or "no labelled predictions (feedback: POST /feedback or `mlops feedback`)",
        "feedback_unmatched": unmatched,
        "verdicts": _verdict_table(assessment),
        "signals": dg.MetadataValue.json([v.to_dict() for v in assessment.verdicts]),
        "severe_signals": ", ".join(v.signal for v in assessment.verdicts if v.verdict == SEVERE_DRIFT) or "none",
        # After a deployment: this version's labels and confidences against the previous version's (not a check:
        # a new model is expected to answer differently; this says how much).
        **_comparison_metadata(store, version, day, stage, monitoring),
        **_service_figures(environment, stage, day, live),
    }
    report = ""
    if assessment.drift is not None:
        key = f"{environment}-{stage}-{day.isoformat()}-{context.run_id[:8]}"
        with artifacts.publishing(REPORT_KIND, key) as destination, atomic_directory(destination) as staging:
            assessment.drift.save_html(staging / REPORT_FILE)
        report = f"{artifacts.uri(REPORT_KIND, key)}/{REPORT_FILE}"
        metadata["report"] = home_path(report)
        metadata["drift_plots"] = png_markdown(
            drift_png(log.for_model(version.model_tag), baseline.inputs(), baseline.predictions()),
            "baseline and today",
        )
        metadata["low_confidence_share"] = assessment.drift.current_share_low
        metadata["baseline_low_confidence_share"] = assessment.drift.reference_share_low
    if assessment.overall == SEVERE_DRIFT:
        alert = _severe_drift_alert(environment, stage, assessment, report)
        delivery = alerting.send(alert)
        metadata["alert"] = delivery_text(delivery, alert.event_id)
        if delivery.error:
            # The report and verdicts still count; the failed delivery is in the alert log and here.
            context.log.error(f"Severe-drift alert not delivered: {delivery.error}")
    context.log.info(json.dumps({"day": day.isoformat(), "stage": stage, "overall": assessment.overall}))
    return dg.MaterializeResult(metadata=metadata, check_results=_check_results(assessment))
