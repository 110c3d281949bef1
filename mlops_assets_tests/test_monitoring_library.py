"""Monitoring without Dagster: the `monitoring:` settings, reading a day's log, verdicts, drift statistics, alerts."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from mlops_assets import settings
from mlops_assets.lib.environment_settings import load_environment_settings
from mlops_assets.lib.monitoring.alerts import RUN_FAILED, Alert, read_alerts, send_alert
from mlops_assets.lib.monitoring.baseline import MonitoringBaseline
from mlops_assets.lib.monitoring.drift import SIGNALS, measure_drift
from mlops_assets.lib.monitoring.logs import read_day
from mlops_assets.lib.monitoring.monitor import MonitoredVersion, assess_day
from mlops_assets.lib.monitoring.settings import MonitoringSettings
from mlops_assets.lib.monitoring.verdicts import (
    DRIFT,
    NO_BASELINE,
    NO_DRIFT,
    NO_MODEL_VERSION,
    NOT_ENOUGH_DATA,
    SEVERE_DRIFT,
)
from mlops_assets.lib.serving.prediction_store import FolderPredictionStore
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets_tests.monitoring_fixtures import baseline_frames, records_like, webhook_receiver, write_log

DAY = dt.date(2026, 11, 3)
TAG = "image-classifier:abc"
VERSION = MonitoredVersion(4, TAG, "f" * 64)


def _stored_baseline(tmp_path: Path, inputs: pd.DataFrame, predictions: pd.DataFrame) -> MonitoringBaseline:
    tmp_path.mkdir(parents=True, exist_ok=True)
    inputs.to_csv(tmp_path / "inputs.csv", index=False)
    predictions.to_csv(tmp_path / "predictions.csv", index=False)
    return MonitoringBaseline(str(tmp_path), "f" * 64, "d" * 64, "code", len(inputs), len(predictions), ())


# ---- settings ---------------------------------------------------------------------------------------------------


def _environment_file(tmp_path: Path, monitoring: str) -> Path:
    text = (settings.environment_file("local")).read_text().split("\nmonitoring:")[0]
    path = tmp_path / "local.yaml"
    path.write_text(text + "\n" + monitoring)
    return path


def test_the_shipped_environment_files_hold_the_documented_monitoring_defaults() -> None:
    for environment in ("local", "staging", "production"):
        monitoring = settings.environment_settings(environment).monitoring
        assert monitoring == MonitoringSettings(retraining_cron="0 3 * * 0"), environment


def test_an_empty_monitoring_section_means_its_defaults(tmp_path: Path) -> None:
    found = load_environment_settings(_environment_file(tmp_path, "monitoring:\n"), "local").monitoring
    assert found == MonitoringSettings()
    assert (found.min_predictions, found.statistics.drift, found.categories.severe) == (200, 0.3, 0.5)
    assert found.retraining_cron is None


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "monitoring:\n  statistics: {drift: 0.5, severe: 0.2}\n",
            "monitoring.statistics = {'drift': 0.5, 'severe': 0.2}: severe (0.2) is below drift (0.5); severe drift "
            "is the larger one",
        ),
        ("monitoring:\n  min_predictions: 0\n", "monitoring.min_predictions = 0: expected an integer >= 1"),
        (
            "monitoring:\n  retraining_cron: weekly\n",
            "monitoring.retraining_cron = 'weekly': expected a cron expression of five fields, e.g. '0 3 * * 0'",
        ),
        ("monitoring:\n  min_predictons: 10\n", "monitoring.min_predictons = 10: unknown setting (known: "),
        (
            "monitoring:\n  alerts: {webhook_url_env: 'http://x'}\n",
            "monitoring.alerts.webhook_url_env = 'http://x': expected an environment variable's name",
        ),
        (
            "monitoring:\n  capture: {alert_labels: {3: 0.9}}\n",
            "alert_labels: label 3 is not text; quote it: {'3': 0.9}",
        ),
    ],
)
def test_a_bad_monitoring_setting_is_refused_naming_the_file_setting_and_value(
    tmp_path: Path, section: str, message: str
) -> None:
    path = _environment_file(tmp_path, section)
    with pytest.raises(ConfigError) as raised:
        load_environment_settings(path, "local")
    assert str(raised.value).startswith(f"{path}: ")
    assert message in str(raised.value)


# ---- reading a day's log ----------------------------------------------------------------------------------------


def test_a_days_log_is_read_with_empty_partial_and_damaged_files_and_bad_records_named(tmp_path: Path) -> None:
    inputs, predictions = baseline_frames()
    good = records_like(inputs, predictions, 5, TAG)
    folder = tmp_path / "predictions"
    # A writer still appending: its last line is cut short and left out.
    write_log(
        folder,
        DAY,
        good[:3],
        pid=1,
        tail='{"timestamp": "2026-11-03T10:00:00',
    )
    write_log(folder, DAY, [], pid=2)
    damaged = write_log(folder, DAY, good[3:], pid=3)
    damaged.write_text(damaged.read_text().replace("\n", "\nnot json\n", 1))
    bad = [{**good[0], "confidence": 1.5}, {key: v for key, v in good[0].items() if key != "brightness"}, [1, 2]]
    write_log(folder, DAY, [*bad, good[4]], pid=4)
    write_log(folder, DAY + dt.timedelta(days=1), good, pid=5)  # another day: not read

    log = read_day(FolderPredictionStore(folder), DAY)

    assert log.files == [f"{DAY}.{pid}.jsonl" for pid in (1, 2, 3, 4)]
    # 3 complete lines of file 1, both records of file 3 around its damaged line, the one good record of file 4.
    assert len(log.records) == 6
    assert log.empty_files == [f"{DAY}.2.jsonl"]
    # One damaged line costs that line, not the file: skipped, counted and named.
    assert (log.unreadable_files, log.bad_lines, log.num_bad_lines) == ({}, {f"{DAY}.3.jsonl": [2]}, 1)
    assert log.problems()[1] == f"1 line(s) that are not JSON skipped: {DAY}.3.jsonl line(s) 2"
    # Process 1 is alive: its cut line may still be finished, and is named as such.
    assert log.problems()[2] == f"file {DAY}.1.jsonl line 4 cut off, left out (a writer still appending to it)"
    assert log.malformed_records == 3
    assert log.malformed_examples == [
        f"{DAY}.4.jsonl: confidence = 1.5 is outside [0, 1]",
        f"{DAY}.4.jsonl: missing brightness",
        f"{DAY}.4.jsonl: not a JSON object: '[1, 2]'",
    ]
    assert log.per_model() == {TAG: 6}


def test_no_log_at_all_is_an_empty_day(tmp_path: Path) -> None:
    log = read_day(FolderPredictionStore(tmp_path / "never-written"), DAY)
    assert (log.files, len(log.records), log.problems()) == ([], 0, [])


# ---- verdicts without a comparison --------------------------------------------------------------------------------


def _log(tmp_path: Path, records: list[dict]):
    write_log(tmp_path / "predictions", DAY, records)
    return read_day(FolderPredictionStore(tmp_path / "predictions"), DAY)


def test_without_a_version_every_signal_says_so_never_no_drift(tmp_path: Path) -> None:
    inputs, predictions = baseline_frames()
    log = _log(tmp_path, records_like(inputs, predictions, 300, TAG))
    assessment = assess_day(log, None, None, MonitoringSettings(), "no version is in production in local")
    assert [v.signal for v in assessment.verdicts] == [*SIGNALS, "input.embedding"]
    assert {v.verdict for v in assessment.verdicts} == {NO_MODEL_VERSION}
    assert assessment.verdicts[0].detail == (
        f"no version is in production in local; records of other model versions, not compared: {TAG} (300)"
    )
    assert assessment.overall == NO_MODEL_VERSION


def test_a_missing_baseline_is_named_with_the_version(tmp_path: Path) -> None:
    inputs, predictions = baseline_frames()
    assessment = assess_day(
        _log(tmp_path, records_like(inputs, predictions, 300, TAG)), VERSION, None, MonitoringSettings()
    )
    assert {v.verdict for v in assessment.verdicts} == {NO_BASELINE}
    assert assessment.verdicts[0].detail == (
        "no baseline for version 4: none was built for its model (materialize monitoring_baseline: `mlops run` "
        f"builds it with the model); 300 prediction(s) of version 4 ({TAG}) logged on {DAY}"
    )
    assert assessment.verdicts[0].describe().startswith("input.brightness: no baseline: no baseline for version 4")
    assert assessment.overall == NO_BASELINE


def test_records_of_another_version_are_not_compared_and_too_few_of_ours_is_not_enough_data(tmp_path: Path) -> None:
    inputs, predictions = baseline_frames()
    records = records_like(inputs, predictions, 150, TAG) + records_like(inputs, predictions, 400, "other:v9", seed=2)
    baseline = _stored_baseline(tmp_path / "baseline", inputs, predictions)
    assessment = assess_day(_log(tmp_path, records), VERSION, baseline, MonitoringSettings())
    assert {v.verdict for v in assessment.verdicts} == {NOT_ENOUGH_DATA}
    assert assessment.num_predictions == 150
    assert assessment.other_versions == {"other:v9": 400}
    assert assessment.verdicts[0].detail == (
        f"150 prediction(s) of version 4 ({TAG}) logged on {DAY}; at least 200 needed (monitoring.min_predictions); "
        "records of other model versions, not compared: other:v9 (400)"
    )
    assert assessment.drift is None


def test_an_empty_or_cut_short_log_is_not_enough_data_with_what_was_left_out(tmp_path: Path) -> None:
    inputs, predictions = baseline_frames()
    baseline = _stored_baseline(tmp_path / "baseline", inputs, predictions)
    log = _log(tmp_path, [])
    # A writer that died mid-line: its process is gone, so the line will never be finished, and is named.
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)
    write_log(tmp_path / "predictions", DAY, [], pid=pid, tail='{"model_version": "image-cl')
    log = read_day(FolderPredictionStore(tmp_path / "predictions"), DAY)
    assessment = assess_day(log, VERSION, baseline, MonitoringSettings())
    assert assessment.overall == NOT_ENOUGH_DATA
    assert assessment.verdicts[-1].detail == (
        f"0 prediction(s) of version 4 ({TAG}) logged on {DAY}; at least 200 needed (monitoring.min_predictions); "
        f"left out: 2 empty file(s): {', '.join(sorted([f'{DAY}.4242.jsonl', f'{DAY}.{pid}.jsonl']))}; "
        f"file {DAY}.{pid}.jsonl line 1 cut off, left out (its writer stopped mid-line)"
    )


# ---- drift statistics (Evidently) ----------------------------------------------------------------------------------


def test_in_distribution_traffic_shows_no_drift_on_any_signal(tmp_path: Path) -> None:
    inputs, predictions = baseline_frames()
    current = pd.DataFrame(records_like(inputs, predictions, 400, TAG, seed=5))
    result = measure_drift(current, inputs, predictions, MonitoringSettings())
    assert [(v.signal, v.verdict) for v in result.verdicts] == [(signal, NO_DRIFT) for signal in SIGNALS]
    brightness = result.verdicts[0]
    expected = wasserstein_distance(inputs["brightness"], current["brightness"]) / inputs["brightness"].std(ddof=0)
    assert brightness.statistic == pytest.approx(expected, rel=1e-6)
    assert (brightness.method, brightness.drift_threshold, brightness.severe_threshold) == (
        "Wasserstein distance (normed)",
        0.3,
        1.0,
    )
    result.save_html(tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    # Evidently's own widget for the column, with the same score.
    assert (
        '"Drift in column \'brightness\'", "label": "Data drift not detected. Drift detection method: '
        f'Wasserstein distance (normed). Drift score: {brightness.statistic:.3f}"' in html
    )


def test_inverted_images_drift_severely_and_lower_confidence_raises_the_low_confidence_share() -> None:
    inputs, predictions = baseline_frames()
    current = pd.DataFrame(records_like(inputs, predictions, 400, TAG, seed=6))
    current["brightness"] = 1.0 - current["brightness"]
    current["label"] = "8"  # every answer the same label
    current.loc[:159, "confidence"] = 0.3  # 40 % at low confidence
    result = measure_drift(current, inputs, predictions, MonitoringSettings())
    verdicts = {v.signal: v for v in result.verdicts}
    assert verdicts["input.brightness"].verdict == SEVERE_DRIFT
    assert verdicts["input.brightness"].statistic > 7  # ~0.4 of brightness moved, in 0.05 standard deviations
    assert verdicts["input.contrast"].verdict == NO_DRIFT
    assert verdicts["input.format"].verdict == NO_DRIFT
    assert verdicts["predicted_label"].verdict == SEVERE_DRIFT
    low = verdicts["low_confidence_share"]
    baseline_share = float((predictions["confidence"] <= 0.5).mean())
    assert result.current_share_low == pytest.approx(0.4)
    assert result.reference_share_low == pytest.approx(baseline_share)
    assert low.statistic == pytest.approx(0.4 - baseline_share)
    assert low.verdict == SEVERE_DRIFT
    assert low.detail == f"40.0% of predictions at confidence <= 0.5 (baseline {baseline_share:.1%})"


def test_a_moderate_shift_is_drift_not_severe_drift() -> None:
    inputs, predictions = baseline_frames()
    current = pd.DataFrame(records_like(inputs, predictions, 400, TAG, seed=7))
    current["contrast"] = current["contrast"] + 0.02  # half a standard deviation
    verdicts = {v.signal: v for v in measure_drift(current, inputs, predictions, MonitoringSettings()).verdicts}
    assert verdicts["input.contrast"].verdict == DRIFT
    assert 0.3 <= verdicts["input.contrast"].statistic < 1.0


# ---- alerts ------------------------------------------------------------------------------------------------------


def test_an_alert_is_logged_and_posted_to_the_webhook(tmp_path: Path) -> None:
    alert = Alert(RUN_FAILED, "Run abc of training_pipeline_job failed: boom", "local", {"run_id": "abc"})
    with webhook_receiver() as receiver:
        delivery = send_alert(alert, tmp_path / "alerts.jsonl", receiver.url)
    assert delivery.delivered and delivery.webhook == receiver.url
    assert receiver.received == [{**alert.payload()}]
    assert receiver.received[0]["text"] == "[local] Run abc of training_pipeline_job failed: boom"
    assert read_alerts(tmp_path / "alerts.jsonl") == [
        {**json.loads(json.dumps(alert.__dict__)), "webhook": receiver.url, "channels": [], "delivery_error": ""}
    ]


def test_a_webhook_that_refuses_is_reported_and_the_alert_stays_in_the_log(tmp_path: Path) -> None:
    alert = Alert(RUN_FAILED, "failed", "local")
    with webhook_receiver(status=500) as receiver:
        delivery = send_alert(alert, tmp_path / "alerts.jsonl", receiver.url)
    assert delivery.error == f"webhook {receiver.url} answered HTTP 500: ''"
    assert read_alerts(tmp_path / "alerts.jsonl")[0]["delivery_error"] == delivery.error
    with pytest.raises(Exception, match="answered HTTP 500"):
        delivery.raise_for_failure()


# ---- the service's own figures -------------------------------------------------------------------------------------

_LABELS = 'runner_name="ImageClassifier",service_name="image-classifier-service",service_version="x"'


def _exposition() -> str:
    """BentoML's series as its /metrics writes them: 100 prediction requests (4 refused, 1 failed) and /readyz."""
    lines = [
        "# HELP bentoml_service_request_total Total number of HTTP requests",
        "# TYPE bentoml_service_request_total counter",
        f'bentoml_service_request_total{{endpoint="/predict",http_response_code="200",{_LABELS}}} 80.0',
        f'bentoml_service_request_total{{endpoint="/predict",http_response_code="400",{_LABELS}}} 4.0',
        f'bentoml_service_request_total{{endpoint="/predict_image",http_response_code="200",{_LABELS}}} 15.0',
        f'bentoml_service_request_total{{endpoint="/predict_image",http_response_code="500",{_LABELS}}} 1.0',
        f'bentoml_service_request_total{{endpoint="/readyz",http_response_code="200",{_LABELS}}} 7.0',
        "# HELP bentoml_service_request_duration_seconds Request duration",
        "# TYPE bentoml_service_request_duration_seconds histogram",
    ]
    cumulative = {
        ("/predict", "200"): (0, 40, 80, 80),
        ("/predict", "400"): (4, 4, 4, 4),
        ("/predict_image", "200"): (0, 0, 10, 15),
        ("/predict_image", "500"): (0, 0, 0, 1),
        ("/readyz", "200"): (7, 7, 7, 7),
    }
    for (endpoint, code), counts in cumulative.items():
        for bound, count in zip(("0.005", "0.01", "0.025", "+Inf"), counts, strict=True):
            lines.append(
                f'bentoml_service_request_duration_seconds_bucket{{endpoint="{endpoint}",http_response_code="{code}",'
                f'le="{bound}",{_LABELS}}} {count}.0'
            )
    return "\n".join(lines) + "\n"


def test_the_services_request_error_and_latency_figures_come_from_its_prometheus_counters() -> None:
    from mlops_assets.lib.monitoring.service_metrics import parse_service_metrics

    figures = parse_service_metrics(_exposition())
    assert (figures.requests, figures.client_errors, figures.server_errors) == (100, 4, 1)
    assert figures.error_share == pytest.approx(0.05)
    # Prediction endpoints only: 4 / 44 / 94 / 100 requests by 5 ms / 10 ms / 25 ms / beyond. The median (rank 50)
    # lies in (10 ms, 25 ms], 6 of its 50 requests in: 10 + 15 * 6/50 = 11.8 ms; p95 (rank 95) is past 25 ms.
    assert figures.latency_p50_s == pytest.approx(0.0118)
    assert figures.latency_p95_s == pytest.approx(0.025)
    assert figures.describe() == (
        "100 prediction request(s) since the server started: 4 client error(s) (4xx), 1 server error(s) (5xx), "
        "latency p50 12 ms, p95 25 ms"
    )
