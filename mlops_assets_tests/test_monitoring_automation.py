"""The retraining loop's automation: the run-failure alert sensor, the monitoring and retraining schedules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets import settings
from mlops_assets.defs.jobs import training_pipeline_job
from mlops_assets.defs.monitoring.jobs import prediction_monitoring_job
from mlops_assets.defs.monitoring.schedules import _checked_cron, monitoring_schedule, retraining_schedule
from mlops_assets.defs.monitoring.sensors import run_failure_alert_sensor
from mlops_assets.lib.monitoring.alerts import read_alerts
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets.resources.prediction_logs import LocalPredictionLogs
from mlops_assets_tests.monitoring_fixtures import webhook_receiver, write_log


@dg.asset
def broken_step() -> None:
    raise ValueError("the disk is full")


@dg.asset(name="bento")
def candidate_bento() -> int:
    return 1


@dg.asset_check(asset=candidate_bento, name="promotion_gate", blocking=True)
def losing_gate() -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description="accuracy 0.7000 is below the floor 0.80")


@dg.asset(deps=[candidate_bento])
def promoted() -> None:
    return None


def _failure_context(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> dg.RunFailureSensorContext:
    run = instance.get_run_by_id(result.run_id)
    failure = next(event for event in result.all_events if event.event_type == dg.DagsterEventType.RUN_FAILURE)
    return dg.build_run_status_sensor_context(
        sensor_name=run_failure_alert_sensor.name, dagster_event=failure, dagster_instance=instance, dagster_run=run
    ).for_run_failure()


@pytest.fixture
def alert_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLOPS_ALERT_WEBHOOK_URL", raising=False)
    return tmp_path / "home" / "alerts" / "alerts.jsonl"


def test_a_failed_run_is_alerted_with_its_failure_to_the_log_and_the_webhook(
    alert_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with webhook_receiver() as receiver, dg.instance_for_test() as instance:
        monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", receiver.url)
        result = dg.materialize([broken_step], instance=instance, raise_on_error=False)
        assert not result.success
        run_failure_alert_sensor(_failure_context(instance, result))
    [alert] = read_alerts(alert_home)
    assert alert["kind"] == "run failed"
    assert alert["title"] == (
        f'Run {result.run_id[:8]} of __ephemeral_asset_job__ failed: Execution of run for "__ephemeral_asset_job__" '
        "failed. Steps failed: ['broken_step']."
    )
    assert (alert["environment"], alert["details"]["run_id"], alert["delivery_error"]) == ("local", result.run_id, "")
    assert [posted["title"] for posted in receiver.received] == [alert["title"]]


def test_a_candidate_that_lost_the_gate_is_alerted_as_such(alert_home: Path) -> None:
    with dg.instance_for_test() as instance:
        result = dg.materialize([candidate_bento, promoted, losing_gate], instance=instance, raise_on_error=False)
        assert not result.success
        run_failure_alert_sensor(_failure_context(instance, result))
    [alert] = read_alerts(alert_home)
    assert alert["kind"] == "candidate lost the gate"
    assert alert["title"] == (
        f"Candidate lost the promotion gate in run {result.run_id[:8]}: accuracy 0.7000 is below the floor 0.80"
    )
    assert alert["webhook"] == ""  # no webhook configured: the alert log only


def test_a_webhook_that_fails_fails_the_tick_and_the_retries_deliver_the_alert_once_with_one_log_line(
    alert_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with webhook_receiver(status=503) as receiver, dg.instance_for_test() as instance:
        monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", receiver.url)
        result = dg.materialize([broken_step], instance=instance, raise_on_error=False)
        context = _failure_context(instance, result)
        for _ in range(2):  # the tick fails, and Dagster evaluates the same failure again
            with pytest.raises(Exception, match=f"webhook {receiver.url} answered HTTP 503"):
                run_failure_alert_sensor(context)
        [failed] = read_alerts(alert_home)
        assert failed["delivery_error"] == f"webhook {receiver.url} answered HTTP 503: ''"
        assert failed["event_id"] == f"run-failed-{result.run_id}"
        receiver.status = 200
        run_failure_alert_sensor(context)  # delivered: the log line is replaced, not repeated
        run_failure_alert_sensor(context)  # already delivered: neither posted nor written again
    [alert] = read_alerts(alert_home)
    assert (alert["event_id"], alert["delivery_error"]) == (f"run-failed-{result.run_id}", "")
    assert len(receiver.received) == 3  # two refused posts, one taken
    assert alert_home.read_text().count("\n") == 1


@pytest.fixture(scope="module")
def repository() -> dg.RepositoryDefinition:
    from mlops_assets.definitions import build_definitions

    return build_definitions("local").get_repository_def()


def _tick(repository: dg.RepositoryDefinition, logs: Path) -> list[dg.RunRequest]:
    schedule = monitoring_schedule("local")
    when = dt.datetime(2026, 11, 30, 0, 30, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=when,
            repository_def=repository,
            resources={"prediction_logs": LocalPredictionLogs(root=str(logs))},
        )
        return schedule.evaluate_tick(context).run_requests


def test_the_monitoring_schedule_grades_the_previous_utc_day(
    repository: dg.RepositoryDefinition, tmp_path: Path
) -> None:
    schedule = monitoring_schedule("local")
    assert (schedule.cron_schedule, schedule.job_name, schedule.execution_timezone) == (
        "30 0 * * *",
        prediction_monitoring_job.name,
        "UTC",
    )
    # No log that day: production alone is graded (a production that logged nothing is worth its warning).
    [request] = _tick(repository, tmp_path / "none")
    assert (request.partition_key, request.run_key) == ("2026-11-29|production", "monitoring-production-2026-11-29")


def test_the_monitoring_schedule_grades_every_stage_that_logged_that_day(
    repository: dg.RepositoryDefinition, tmp_path: Path
) -> None:
    logs = tmp_path / "predictions"
    write_log(logs, dt.date(2026, 11, 29), [], pid=1, stage="staging")
    write_log(logs, dt.date(2026, 11, 29), [], pid=2)  # written before stages were logged: unstaged
    write_log(logs, dt.date(2026, 11, 28), [], pid=3, stage="production")  # another day
    requests = _tick(repository, logs)
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("2026-11-29|production", "monitoring-production-2026-11-29"),
        ("2026-11-29|staging", "monitoring-staging-2026-11-29"),
        ("2026-11-29|unstaged", "monitoring-unstaged-2026-11-29"),
    ]


def test_the_retraining_schedule_runs_the_pipeline_on_the_environments_cron() -> None:
    schedule = retraining_schedule("local")
    assert schedule is not None
    assert schedule.cron_schedule == settings.environment_settings("local").monitoring.retraining_cron == "0 3 * * 0"
    assert schedule.job_name == training_pipeline_job.name
    with dg.instance_for_test() as instance:
        when = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC)
        [request] = schedule.evaluate_tick(
            dg.build_schedule_context(instance=instance, scheduled_execution_time=when)
        ).run_requests
    assert request.tags["mlops/reason"] == "scheduled retraining"


def test_a_cron_dagster_cannot_schedule_is_refused_naming_the_file_and_setting() -> None:
    with pytest.raises(ConfigError) as raised:
        _checked_cron("local", "retraining_cron", "61 3 * * *")
    assert str(raised.value) == (
        f"{settings.environment_file('local')}: monitoring.retraining_cron = '61 3 * * *': expected a valid cron "
        "expression of 5 fields"
    )


def test_the_code_location_holds_the_monitoring_job_sensors_and_schedules(repository: dg.RepositoryDefinition) -> None:
    assert {"drift_sensor", "run_failure_alert_sensor", "raw_data_sensor"} <= {s.name for s in repository.sensor_defs}
    assert {s.name for s in repository.schedule_defs} == {"prediction_monitoring_schedule", "retraining_schedule"}
    pipeline = repository.get_job(training_pipeline_job.name)
    selected = {key.to_user_string() for key in pipeline.asset_layer.selected_asset_keys}
    assert "monitoring_baseline" in selected and "prediction_monitoring" not in selected
    monitoring = repository.get_job(prediction_monitoring_job.name)
    assert {key.to_user_string() for key in monitoring.asset_layer.selected_asset_keys} == {"prediction_monitoring"}
