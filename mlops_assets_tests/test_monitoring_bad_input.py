"""Bad records, damaged baselines and cut-off logs: each named where it is left out, never a failed day."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops_assets import settings
from mlops_assets.defs.monitoring.assets import delivery_text
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.monitoring.accuracy import unmatched_feedback, unmatched_note
from mlops_assets.lib.monitoring.alert_inputs import new_alert_inputs
from mlops_assets.lib.monitoring.alerts import SEVERE_DRIFT, Alert, send_alert
from mlops_assets.lib.monitoring.baseline import (
    BASELINE_FILE,
    DamagedBaseline,
    check_baseline_files,
    load_monitoring_baseline,
)
from mlops_assets.lib.monitoring.capture import feedback_given_on, parse_feedback, read_feedback
from mlops_assets.lib.monitoring.logs import read_day
from mlops_assets.lib.monitoring.monitor import MonitoredVersion, assess_day
from mlops_assets.lib.monitoring.settings import MonitoringSettings, alert_label_problem
from mlops_assets.lib.monitoring.verdicts import NO_BASELINE
from mlops_assets.lib.serving.prediction_store import FolderPredictionStore
from mlops_assets.packaging import serving_arguments
from mlops_assets_tests.monitoring_fixtures import records_like, write_log

DAY = dt.date(2026, 11, 3)
TAG = "image-classifier:abc"
VERSION = MonitoredVersion(4, TAG, "f" * 64)


def _frames(count: int = 50) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(1)
    inputs = pd.DataFrame(
        {
            "format": "PNG",
            "width": 8,
            "height": 8,
            "mode": "L",
            "brightness": rng.uniform(0, 1, count),
            "contrast": rng.uniform(0, 1, count),
        }
    )
    predictions = pd.DataFrame({"label": rng.choice(["cat", "dog"], count), "confidence": rng.uniform(0.5, 1, count)})
    return inputs, predictions


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("index", "abc", "index = 'abc' is not an integer >= 0"),
        ("index", None, "index = None is not an integer >= 0"),
        ("index", -1, "index = -1 is not an integer >= 0"),
        ("index", True, "index = True is not an integer >= 0"),
        ("request_id", 17, "request_id = 17 is not text"),
        ("timestamp", None, "timestamp = None is not text"),
        ("embedding", [0.1, "x"], "embedding = \"[0.1, 'x']\" is not a list of finite numbers"),
        ("embedding", [], "embedding = '[]' is not a list of finite numbers"),
        ("embedding", {"a": 1}, "embedding = \"{'a': 1}\" is not a list of finite numbers"),
    ],
)
def test_a_record_with_a_bad_optional_field_is_left_out_and_named_not_a_failed_day(
    tmp_path: Path, field: str, value: object, problem: str
) -> None:
    inputs, predictions = _frames()
    good = records_like(inputs, predictions, 3, TAG)
    good[0]["index"], good[1]["request_id"] = 2, "a" * 32
    write_log(tmp_path, DAY, [*good, {**good[0], field: value}])

    log = read_day(FolderPredictionStore(tmp_path), DAY)

    assert len(log.records) == 3
    assert log.records["index"].tolist() == [2, 0, 0]
    assert log.records["request_id"].tolist()[1] == "a" * 32
    assert log.malformed_records == 1
    assert log.problems() == [f"1 malformed record(s) left out, e.g. {DAY}.4242.jsonl: {problem}"]


def test_feedback_lines_with_a_bad_index_request_id_or_label_are_skipped(tmp_path: Path) -> None:
    rid = "b" * 32
    lines = [
        {"request_id": rid, "index": 0, "label": "cat"},
        {"request_id": rid, "index": "abc", "label": "dog"},
        {"request_id": rid, "index": None, "label": "dog"},
        {"request_id": 5, "index": 1, "label": "dog"},
        {"request_id": rid, "index": 1, "label": 3},
        {"request_id": rid, "label": "dog"},  # no index: image 0, given later, wins
    ]
    (tmp_path / "2026-11-03.1.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert read_feedback(FolderPredictionStore(tmp_path)) == {(rid, 0): "dog"}


def _baseline_folder(tmp_path: Path) -> Path:
    inputs, predictions = _frames()
    folder = tmp_path / "baseline"
    folder.mkdir()
    inputs.to_csv(folder / "inputs.csv", index=False)
    predictions.to_csv(folder / "predictions.csv", index=False)
    document = {
        "weights_sha256": "f" * 64,
        "data_version": "d" * 64,
        "code_version": "code",
        "num_inputs": len(inputs),
        "num_predictions": len(predictions),
        "labels": ["cat", "dog"],
    }
    (folder / BASELINE_FILE).write_text(json.dumps(document))
    return folder


def test_an_intact_baseline_passes_its_check(tmp_path: Path) -> None:
    baseline = load_monitoring_baseline(_baseline_folder(tmp_path))
    check_baseline_files(baseline)
    assert (baseline.num_inputs, baseline.labels) == (50, ("cat", "dog"))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda folder: (folder / "baseline.json").write_text('{"weights_sha256": "ff'),
            "baseline.json is damaged (JSONDecodeError: Unterminated string starting at: line 1 column 20 (char 19)); "
            "rematerialize monitoring_baseline",
        ),
        (
            lambda folder: (folder / "baseline.json").write_text('{"weights_sha256": "ff"}'),
            "baseline.json is damaged (KeyError: 'data_version'); rematerialize monitoring_baseline",
        ),
        (
            lambda folder: (folder / "inputs.csv").write_text(""),
            "inputs.csv is damaged (EmptyDataError: No columns to parse from file); rematerialize monitoring_baseline",
        ),
        (
            lambda folder: (folder / "predictions.csv").write_text("label,confidence\ncat,0.9\n"),
            "predictions.csv is damaged (1 row(s), baseline.json says 50); rematerialize monitoring_baseline",
        ),
        (
            lambda folder: (folder / "inputs.csv").write_text("format,width\nPNG,8\n"),
            "inputs.csv is damaged (no column(s) height, mode, brightness, contrast); rematerialize "
            "monitoring_baseline",
        ),
    ],
)
def test_a_damaged_baseline_is_a_no_baseline_verdict_naming_the_file(tmp_path: Path, damage, message: str) -> None:
    folder = _baseline_folder(tmp_path)
    damage(folder)
    with pytest.raises(DamagedBaseline) as caught:
        check_baseline_files(load_monitoring_baseline(folder))
    assert str(caught.value) == message

    inputs, predictions = _frames()
    write_log(tmp_path / "logs", DAY, records_like(inputs, predictions, 300, TAG))
    log = read_day(FolderPredictionStore(tmp_path / "logs"), DAY)
    assessment = assess_day(log, VERSION, None, MonitoringSettings(), baseline_damage=str(caught.value))
    assert assessment.overall == NO_BASELINE
    assert {v.verdict for v in assessment.verdicts} == {NO_BASELINE}
    assert assessment.verdicts[0].detail == (
        f"no baseline for version 4: {message}; 300 prediction(s) of version 4 ({TAG}) logged on {DAY}"
    )


def test_a_version_that_does_not_exist_is_one_clean_reason(tmp_path: Path) -> None:
    inputs, predictions = _frames()
    write_log(tmp_path, DAY, records_like(inputs, predictions, 3, TAG))
    log = read_day(FolderPredictionStore(tmp_path), DAY)
    reason = "There is no version 7 of image-classifier; see `mlops models list`."
    assessment = assess_day(log, None, None, MonitoringSettings(), reason)
    assert assessment.verdicts[0].detail == (
        "There is no version 7 of image-classifier; see `mlops models list`; records of other model versions, not "
        f"compared: {TAG} (3)"
    )


def test_an_alert_already_sent_says_so_with_its_event(tmp_path: Path) -> None:
    alert = Alert(SEVERE_DRIFT, "Severe drift", "local", event_id="severe-drift-local-2026-11-03-v4")
    log_path = tmp_path / "alerts.jsonl"
    first = send_alert(alert, log_path)
    assert delivery_text(first, alert.event_id) == f"sent to {log_path}"
    again = send_alert(alert, log_path)
    assert delivery_text(again, alert.event_id) == (
        "already sent (event severe-drift-local-2026-11-03-v4); not sent again"
    )
    assert len(log_path.read_text().splitlines()) == 1


def test_an_alert_label_the_model_lacks_is_refused_when_the_bento_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert alert_label_problem({"drone": 0.8}, ("drone", "bird")) == ""
    assert alert_label_problem({"drone": 0.8, "3": 0.9}, ("0", "1")) == (
        "monitoring.capture.alert_labels names 'drone', '3', not a label of the model (labels: 0, 1); correct the "
        "setting in the environment file"
    )
    text = settings.environment_file("local").read_text().split("\nmonitoring:")[0]
    path = tmp_path / "local.yaml"
    path.write_text(text + "\nmonitoring:\n  capture: {alert_labels: {drone: 0.8}}\n")
    monkeypatch.setattr(settings, "environment_file", lambda environment: path)
    monkeypatch.setenv("MLOPS_ENV", "local")
    assert serving_arguments(["drone", "bird"])["capture"]["alert_labels"] == {"drone": 0.8}
    with pytest.raises(MLOpsError) as caught:
        serving_arguments(["cat", "dog"])
    assert str(caught.value) == (
        "monitoring.capture.alert_labels names 'drone', not a label of the model (labels: cat, dog); correct the "
        "setting in the environment file (local.yaml)."
    )


def test_too_many_feedback_items_for_one_request_are_refused_without_echoing_them() -> None:
    items = [{"request_id": f"{n:032x}", "label": "cat"} for n in range(1001)]
    with pytest.raises(ValueError) as caught:
        parse_feedback({"feedback": items}, labels=None)
    message = str(caught.value)
    assert message.startswith("feedback: List should have at most 1000 items after validation, not 1001 (got [{")
    assert len(message) < 300


def test_labels_given_on_the_day_that_match_no_logged_prediction_are_counted(tmp_path: Path) -> None:
    inputs, predictions = _frames()
    logged = records_like(inputs, predictions, 2, TAG)
    logged[0]["request_id"], logged[1]["request_id"] = "a" * 32, "b" * 32
    write_log(tmp_path / "logs", DAY, logged)
    log = read_day(FolderPredictionStore(tmp_path / "logs"), DAY)
    feedback = tmp_path / "feedback"
    feedback.mkdir()
    lines = [
        {"timestamp": f"{DAY}T10:00:00", "request_id": "a" * 32, "index": 0, "label": "cat"},
        {"timestamp": f"{DAY}T10:00:01", "request_id": "c" * 32, "index": 0, "label": "cat"},
        {"timestamp": f"{DAY}T10:00:02", "request_id": "a" * 32, "index": 3, "label": "dog"},
        {"timestamp": "2026-11-02T10:00:00", "request_id": "d" * 32, "index": 0, "label": "cat"},
    ]
    (feedback / f"{DAY}.1.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))

    given = feedback_given_on(FolderPredictionStore(feedback), DAY)

    assert given == {("a" * 32, 0), ("c" * 32, 0), ("a" * 32, 3)}
    assert unmatched_feedback(log, given) == 2
    assert unmatched_note(2, DAY) == (
        f"2 label(s) given on {DAY} match no logged prediction (only a sample of requests is logged: "
        "prediction_log_sample_rate)"
    )


def test_a_kept_alert_input_with_bad_fields_is_skipped_and_named_not_a_failed_tick(tmp_path: Path) -> None:
    image = base64.b64encode(b"\x89PNG").decode()
    good = {
        "request_id": "a" * 32,
        "index": 0,
        "model_version": TAG,
        "label": "drone",
        "confidence": 0.9,
        "alert_confidence": 0.8,
        "image": image,
    }
    bad = [
        {**good, "request_id": "../../x"},
        {**good, "index": "abc"},
        {**good, "confidence": "high"},
        {**good, "label": None},
    ]
    (tmp_path / f"{DAY}.1.jsonl").write_text("".join(json.dumps(record) + "\n" for record in [*bad, good]))

    found, cursor, problems = new_alert_inputs(FolderPredictionStore(tmp_path), {})

    assert [each.event_id for each in found] == [f"alert-label-{'a' * 32}-0"]
    assert cursor == {f"{DAY}.1.jsonl": 5}
    assert problems == [
        f"{DAY}.1.jsonl record 1: request_id = '../../x' is not a request id",
        f"{DAY}.1.jsonl record 2: index = 'abc' is not an integer >= 0",
        f"{DAY}.1.jsonl record 3: confidence = 'high' is not a finite number",
        f"{DAY}.1.jsonl record 4: label = None is not text",
    ]
