"""prediction_monitoring through Dagster: a real model's baseline, logs as the service writes them, the checks, the
alert, and the drift sensor that requests retraining."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets import settings
from mlops_assets.defs.jobs import training_pipeline_job
from mlops_assets.defs.metadata import resolve_home_path
from mlops_assets.defs.monitoring.assets import (
    BASELINE_KIND,
    NO_DRIFT_CHECK,
    NO_SEVERE_DRIFT_CHECK,
    monitoring_baseline,
    monitoring_partition,
    prediction_monitoring,
)
from mlops_assets.defs.monitoring.sensors import drift_sensor
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.validated_data import GeometryConfig, ValidatedDataset, build_validated_dataset
from mlops_assets.lib.deploy.release import DeploymentRecord
from mlops_assets.lib.models.plugins.base import TrainSettings
from mlops_assets.lib.models.training import TrainedModel, train_model
from mlops_assets.lib.monitoring.alerts import read_alerts
from mlops_assets.lib.monitoring.baseline import MonitoringBaseline, load_monitoring_baseline
from mlops_assets.lib.monitoring.drift import SIGNALS
from mlops_assets.lib.registry.gate import GateDecision
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.local_target import LocalDeployer, StageState
from mlops_assets.resources.prediction_logs import LocalPredictionLogs
from mlops_assets.resources.registry import ModelRegistryResource
from mlops_assets_tests.monitoring_fixtures import records_like, webhook_receiver, write_log
from mlops_assets_tests.registry_helpers import new_version

DAY = dt.date(2026, 11, 3)


@dataclass(frozen=True)
class Monitored:
    """A trained model registered as version 1 in production, with its baseline in the artifact store."""

    registry: ModelRegistryResource
    artifacts: LocalArtifactStore
    model: TrainedModel
    data: ValidatedDataset
    baseline: MonitoringBaseline
    model_tag: str


@pytest.fixture(scope="module")
def monitored(digits_subset: Path, tmp_path_factory: pytest.TempPathFactory) -> Monitored:
    root = tmp_path_factory.mktemp("monitored")
    artifacts = LocalArtifactStore(root=str(root / "artifacts"))
    # Stored where the pipeline stores them, under their versions, as the asset reads them.
    data = build_validated_dataset(
        scan_dataset(digits_subset),
        GeometryConfig(),
        artifacts.path_for("validated_images", "data-v1"),
        version="data-v1",
    )
    settings = TrainSettings(epochs=2, device="cpu")
    model = train_model(
        data, "softmax", {}, settings, artifacts.path_for("trained_model", "model-v1"), version="model-v1"
    )
    # The asset itself builds the baseline (called directly, with the context a run gives it).
    with dg.build_asset_context() as context:
        result = monitoring_baseline(context, trained_model=model, validated_images=data, artifacts=artifacts)
    assert result.metadata["reference_inputs"] == data.split_counts["train"]
    baseline = load_monitoring_baseline(artifacts.path_for(BASELINE_KIND, model.weights_sha256))
    registry = ModelRegistryResource(url=f"sqlite:///{root / 'registry.db'}", environment="local")
    tag = "image-classifier:monitored"
    version = new_version(1)
    with registry.open() as models:
        number = models.register(
            version.__class__(**{**version.__dict__, "model_tag": tag, "weights_sha256": model.weights_sha256}), "test"
        ).version.number
        models.record_gate(number, GateDecision(True, "test"), "run-1")
        models.promote(number, "production", "test")
    return Monitored(registry, artifacts, model, data, baseline, tag)


def _materialize(
    instance: dg.DagsterInstance,
    monitored: Monitored,
    logs: Path,
    registry: ModelRegistryResource | None = None,
    stage: str = "unstaged",
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [prediction_monitoring],
        partition_key=monitoring_partition(DAY, stage),
        instance=instance,
        resources={
            "registry": registry or monitored.registry,
            "artifacts": monitored.artifacts,
            "prediction_logs": LocalPredictionLogs(root=str(logs)),
        },
        run_config=run_config,
    )


def _outcome(result: dg.ExecuteInProcessResult) -> tuple[dict, dict[str, dg.AssetCheckEvaluation]]:
    materialization = result.asset_materializations_for_node("prediction_monitoring")[0]
    metadata = {key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
    checks = {evaluation.check_name: evaluation for evaluation in result.get_asset_check_evaluations()}
    return metadata, checks


def _records(monitored: Monitored, count: int, seed: int, tag: str | None = None) -> list[dict]:
    return records_like(
        monitored.baseline.inputs(), monitored.baseline.predictions(), count, tag or monitored.model_tag, seed
    )


def test_the_baseline_holds_training_inputs_and_held_out_answers_of_that_model(monitored: Monitored) -> None:
    baseline, data = monitored.baseline, monitored.data
    assert baseline.weights_sha256 == monitored.model.weights_sha256
    assert baseline.data_version == data.data_version
    assert baseline.num_inputs == data.split_counts["train"]
    assert baseline.num_predictions == data.split_counts["val"] + data.split_counts["test"]
    statistics = data.statistics()
    train = statistics[statistics["split"] == "train"]
    inputs = baseline.inputs()
    assert sorted(inputs["brightness"].round(6)) == sorted(train["brightness"].round(6))
    predictions = baseline.predictions()
    assert set(predictions["label"]) <= set(data.labels)
    assert predictions["confidence"].between(0.1, 1.0).all()


def test_a_day_of_in_distribution_traffic_shows_no_drift_and_passes_both_checks(
    monitored: Monitored, tmp_path: Path
) -> None:
    write_log(tmp_path / "logs", DAY, _records(monitored, 300, seed=1))
    with dg.instance_for_test() as instance:
        metadata, checks = _outcome(_materialize(instance, monitored, tmp_path / "logs"))
        tick = drift_sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert metadata["overall"] == "no drift"
    assert (metadata["model_version"], metadata["model_tag"], metadata["num_predictions"]) == (
        1,
        monitored.model_tag,
        300,
    )
    # The softmax plug-in has no embedding: that signal says so and counts as neither drift nor a gap.
    assert [(s["signal"], s["verdict"]) for s in metadata["signals"]] == [
        *[(name, "no drift") for name in SIGNALS],
        ("input.embedding", "not monitored"),
    ]
    assert metadata["signals"][-1]["detail"] == "no embedding from plug-in softmax"
    assert metadata["severe_signals"] == "none"
    # This test's artifacts lie outside the home, so the path stays absolute (test_metadata_paths covers the home).
    assert f"/prediction_monitoring/local-unstaged-{DAY}-" in metadata["report"]
    report = resolve_home_path(metadata["report"])
    assert report.name == "report.html" and report.stat().st_size > 100_000
    assert metadata["drift_plots"].startswith("![baseline and today](data:image/png;base64,")
    assert "| input.brightness | no drift |" in metadata["verdicts"]
    assert (checks[NO_DRIFT_CHECK].passed, checks[NO_SEVERE_DRIFT_CHECK].passed) == (True, True)
    assert checks[NO_DRIFT_CHECK].description == "no drift: no signal drifted"
    assert "alert" not in metadata
    assert metadata["service"] == (
        "not read: the service's counters run since it started, so only today's partition has them"
    )
    # What a sensor or a script reads back: plain JSON, one object per signal.
    assert json.loads(json.dumps(metadata["signals"])) == metadata["signals"]
    assert set(metadata["signals"][0]) == {
        "signal",
        "verdict",
        "statistic",
        "method",
        "drift_threshold",
        "severe_threshold",
        "detail",
    }
    assert tick.run_requests == []
    assert tick.skip_message == f"prediction_monitoring for {DAY} in unstaged: no drift; nothing to retrain for."
    assert (metadata["stage"], metadata["day"]) == ("unstaged", DAY.isoformat())


def test_inverted_traffic_drifts_severely_fails_the_check_alerts_and_the_sensor_requests_retraining(
    monitored: Monitored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = _records(monitored, 300, seed=2)
    for record in records:
        record["brightness"] = 1.0 - record["brightness"]
    write_log(tmp_path / "logs", DAY, records)
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    with webhook_receiver() as receiver, dg.instance_for_test() as instance:
        monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", receiver.url)
        metadata, checks = _outcome(_materialize(instance, monitored, tmp_path / "logs"))

        assert metadata["overall"] == "severe drift"
        verdicts = {s["signal"]: s for s in metadata["signals"]}
        assert verdicts["input.brightness"]["verdict"] == "severe drift"
        assert verdicts["input.brightness"]["statistic"] > 1.0
        assert verdicts["input.contrast"]["verdict"] == "no drift"
        assert metadata["severe_signals"] == "input.brightness"
        severe = checks[NO_SEVERE_DRIFT_CHECK]
        assert (severe.passed, severe.severity) == (False, dg.AssetCheckSeverity.ERROR)
        assert severe.description.startswith("severe drift: input.brightness: severe drift (Wasserstein distance")
        assert (checks[NO_DRIFT_CHECK].passed, checks[NO_DRIFT_CHECK].severity) == (False, dg.AssetCheckSeverity.WARN)

        alert_log = tmp_path / "home" / "alerts" / "alerts.jsonl"
        assert metadata["alert"] == f"sent to {alert_log} and {receiver.url}"
        [posted] = receiver.received
        assert posted["kind"] == "severe drift"
        assert posted["text"].startswith(
            f"[local] Severe drift in unstaged on {DAY} for version 1 ({monitored.model_tag}): "
        )
        assert Path(posted["details"]["report"]) == resolve_home_path(metadata["report"])
        assert [alert["title"] for alert in read_alerts(alert_log)] == [posted["title"]]

        # The drift sensor: one retraining request per day and version, remembered through the cursor.
        first = drift_sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        [request] = first.run_requests
        assert drift_sensor.job_name == training_pipeline_job.name  # the sensor's one job: the whole pipeline
        assert request.run_key == f"severe-drift-{DAY}-v1"
        assert request.tags["mlops/reason"] == "severe drift"
        assert request.tags["mlops/severe_signals"] == "input.brightness"
        again = drift_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, cursor=first.cursor))
        assert again.run_requests == []
        assert first.cursor is not None and again.cursor == first.cursor


def test_logs_of_another_version_only_are_not_enough_data_and_fail_both_checks_as_warnings(
    monitored: Monitored, tmp_path: Path
) -> None:
    write_log(tmp_path / "logs", DAY, _records(monitored, 300, seed=4, tag="image-classifier:older"))
    write_log(tmp_path / "logs", DAY, [], pid=77)
    with dg.instance_for_test() as instance:
        metadata, checks = _outcome(_materialize(instance, monitored, tmp_path / "logs"))
        tick = drift_sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert metadata["overall"] == "not enough data"
    assert metadata["other_versions"] == {"image-classifier:older": 300}
    assert metadata["log_problems"] == f"1 empty file(s): {DAY}.77.jsonl"
    expected = (
        f"not enough data: 0 prediction(s) of version 1 ({monitored.model_tag}) logged on {DAY}; at least 200 needed "
        "(monitoring.min_predictions); records of other model versions, not compared: image-classifier:older (300); "
        f"left out: 1 empty file(s): {DAY}.77.jsonl"
    )
    for name in (NO_DRIFT_CHECK, NO_SEVERE_DRIFT_CHECK):
        assert (checks[name].passed, checks[name].severity, checks[name].description) == (
            False,
            dg.AssetCheckSeverity.WARN,
            expected,
        )
    assert "report" not in metadata
    assert tick.run_requests == []


def _timed(records: list[dict], start: dt.datetime, hours: float) -> list[dict]:
    """The records spread evenly over `hours` from `start` (the service stamps them when it answers)."""
    step = hours * 3600 / len(records)
    return [
        {**record, "timestamp": (start + dt.timedelta(seconds=n * step)).isoformat(timespec="milliseconds")}
        for n, record in enumerate(records)
    ]


def test_a_day_with_a_deployment_compares_the_new_version_with_the_previous_one(
    monitored: Monitored, tmp_path: Path
) -> None:
    # The previous version answered until noon, the monitored one from noon: 12 hours on each side on this day.
    noon = dt.datetime.combine(DAY, dt.time(12), tzinfo=dt.UTC)
    older = _timed(_records(monitored, 300, seed=7, tag="image-classifier:older"), noon - dt.timedelta(hours=12), 12)
    write_log(tmp_path / "logs", DAY, older + _timed(_records(monitored, 300, seed=8), noon, 12))
    with dg.instance_for_test() as instance:
        metadata, _ = _outcome(_materialize(instance, monitored, tmp_path / "logs"))
    assert metadata["deployment_comparison"] == (
        f"no drift: {monitored.model_tag} (300 prediction(s) in the 12 h after its first record at "
        f"{DAY}T12:00:00+00:00) against image-classifier:older (300 in the 12 h before)"
    )
    details = metadata["deployment_comparison_signals"]
    assert (details["previous_tag"], details["window_hours"], details["before_count"], details["after_count"]) == (
        "image-classifier:older",
        12.0,
        300,
        300,
    )
    assert [(s["signal"], s["verdict"]) for s in details["signals"]] == [
        ("comparison.predicted_label", "no drift"),
        ("comparison.confidence", "no drift"),
    ]
    # The comparison is not one of the day's drift signals: the day is graded against the baseline as before.
    assert metadata["overall"] == "no drift"


def test_a_production_version_without_a_baseline_says_no_baseline_for_that_version(
    monitored: Monitored, tmp_path: Path
) -> None:
    registry = ModelRegistryResource(url=f"sqlite:///{tmp_path / 'registry.db'}", environment="local")
    with ModelRegistry(registry.url, "local") as models:
        for index in (1, 2):
            number = models.register(new_version(index), "test").version.number
            models.record_gate(number, GateDecision(True, "test"), f"run-{index}")
        models.promote(2, "production", "test")
    write_log(tmp_path / "logs", DAY, _records(monitored, 300, seed=5, tag="image-classifier:v2"))
    with dg.instance_for_test() as instance:
        metadata, checks = _outcome(_materialize(instance, monitored, tmp_path / "logs", registry))
    assert metadata["overall"] == "no baseline"
    assert {s["verdict"] for s in metadata["signals"]} == {"no baseline"}
    assert checks[NO_SEVERE_DRIFT_CHECK].description == (
        "no baseline: no baseline for version 2: none was built for its model (materialize monitoring_baseline: "
        "`mlops run` builds it with the model); 300 prediction(s) of version 2 (image-classifier:v2) logged on "
        f"{DAY}"
    )


def test_no_production_version_is_a_verdict_not_a_crash(monitored: Monitored, tmp_path: Path) -> None:
    registry = ModelRegistryResource(url=f"sqlite:///{tmp_path / 'registry.db'}", environment="local")
    write_log(tmp_path / "logs", DAY, _records(monitored, 10, seed=6))
    with dg.instance_for_test() as instance:
        metadata, checks = _outcome(_materialize(instance, monitored, tmp_path / "logs", registry))
    assert metadata["overall"] == "no model version"
    assert metadata["model_version"] == 0
    assert metadata["deployment_comparison"] == "no model version: no model version to compare"
    assert checks[NO_DRIFT_CHECK].description == (
        "no model version: no version is in production in local; promote one (`mlops models promote N`) or monitor "
        f"a version by number (config `version`); records of other model versions, not compared: "
        f"{monitored.model_tag} (10)"
    )


def test_each_stage_is_graded_apart_and_the_sensor_skips_staging_severe_drift(
    monitored: Monitored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    logs = tmp_path / "logs"
    shifted = _records(monitored, 300, seed=7)
    for record in shifted:
        record["brightness"] = 1.0 - record["brightness"]
    write_log(logs, DAY, shifted, pid=11, stage="staging")
    write_log(logs, DAY, _records(monitored, 300, seed=8), pid=12, stage="production")
    by_number = {"ops": {"prediction_monitoring": {"config": {"version": 1}}}}
    with dg.instance_for_test() as instance:
        # Nothing is deployed in staging in this home: without a version by number there is nothing to grade.
        undeployed, _ = _outcome(_materialize(instance, monitored, logs, stage="staging"))
        staging, _ = _outcome(_materialize(instance, monitored, logs, stage="staging", run_config=by_number))
        production, checks = _outcome(_materialize(instance, monitored, logs, stage="production", run_config=by_number))
        unstaged, _ = _outcome(_materialize(instance, monitored, logs, stage="unstaged"))
        # Production's materialization is the latest; staging's severe drift is still seen.
        tick = drift_sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert (undeployed["overall"], undeployed["model_version"]) == ("no model version", 0)
    assert undeployed["signals"][0]["detail"] == (
        "nothing is deployed in staging in local; deploy a version (`mlops deploy staging`) or monitor a version by "
        f"number (config `version`); records of other model versions, not compared: {monitored.model_tag} (300)"
    )
    assert (staging["stage"], staging["overall"], staging["num_predictions"]) == ("staging", "severe drift", 300)
    assert (production["stage"], production["overall"], production["num_predictions"]) == (
        "production",
        "no drift",
        300,
    )
    assert (checks[NO_DRIFT_CHECK].passed, checks[NO_SEVERE_DRIFT_CHECK].passed) == (True, True)
    # Files of neither stage: the unstaged partition has no records.
    assert (unstaged["stage"], unstaged["overall"], unstaged["log_files"]) == ("unstaged", "not enough data", 0)
    assert f"/prediction_monitoring/local-staging-{DAY}-" in staging["report"]
    [alert] = read_alerts(tmp_path / "home" / "alerts" / "alerts.jsonl")
    assert alert["event_id"] == f"severe-drift-local-staging-{DAY}-v1"
    assert alert["title"].startswith(f"Severe drift in staging on {DAY} for version 1 ({monitored.model_tag}): ")
    # Staging's severe drift is alerted but requests no retraining: staging is tried with odd inputs on purpose.
    assert tick.run_requests == []
    assert tick.skip_message == (
        f"prediction_monitoring for {DAY} in staging: no model version; nothing to retrain for. "
        f"Severe drift on {DAY} in staging (version 1) not retrained for: only drift in production and unstaged "
        "requests retraining (staging is tried with odd inputs on purpose); its check failed and it was alerted. "
        f"prediction_monitoring for {DAY} in production: no drift; nothing to retrain for. "
        f"prediction_monitoring for {DAY} in unstaged: not enough data; nothing to retrain for."
    )


def test_a_stage_partition_grades_the_version_live_in_that_stage(
    monitored: Monitored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    # What the local deployer records once version 1 went live in staging (its own state file, written by it).
    deployer = LocalDeployer("staging", settings.environment_settings("local"))
    record = DeploymentRecord("staging", "local", 1, "image-classifier-service:x", "v1", deployer.url, ())
    deployer._save(StageState(record=record))
    write_log(tmp_path / "logs", DAY, _records(monitored, 300, seed=9), stage="staging")
    with dg.instance_for_test() as instance:
        metadata, _ = _outcome(_materialize(instance, monitored, tmp_path / "logs", stage="staging"))
    assert (metadata["stage"], metadata["model_version"], metadata["model_tag"]) == ("staging", 1, monitored.model_tag)
    assert (metadata["overall"], metadata["num_predictions"]) == ("no drift", 300)
