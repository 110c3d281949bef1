"""Ground-truth feedback: the service's /feedback endpoint (behind its key and body checks), `mlops feedback`, and
live accuracy per model version from the logged predictions they name."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from mlops_assets.cli import main
from mlops_assets.lib.monitoring.accuracy import live_accuracy
from mlops_assets.lib.monitoring.capture import FEEDBACK, read_feedback
from mlops_assets.lib.monitoring.logs import read_day
from mlops_assets.lib.registry.gate import GateDecision
from mlops_assets.lib.serving.prediction_log import prediction_record
from mlops_assets.lib.serving.prediction_store import FolderPredictionStore, substore
from mlops_assets.registry_home import open_registry
from mlops_assets_tests.registry_helpers import new_version
from mlops_assets_tests.service_fixtures import ServedBento


def _wait_for(condition, what: str, timeout_s: float = 30.0):
    """The condition's value once truthy (the service's writers flush every half second)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what} did not appear within {timeout_s:.0f} s")


def test_feedback_names_an_answer_by_request_id_and_live_accuracy_counts_it(served_bento: ServedBento) -> None:
    (true_label, png), (_, other_png) = served_bento.samples[0], served_bento.samples[1]
    with served_bento.client() as client:
        answer = client.post("/predict", files=[("images", ("a.png", png, "image/png"))]).json()
        second = client.post("/predict", files=[("images", ("b.png", other_png, "image/png"))]).json()
        request_id, predicted = answer["request_id"], answer["predictions"][0]["label"]
        assert len(request_id) == 32 and request_id != second["request_id"]
        wrong = next(label for label in "0123456789" if label != second["predictions"][0]["label"])
        accepted = client.post(
            "/feedback",
            json={
                "feedback": [
                    {"request_id": request_id, "index": 0, "label": true_label},
                    {"request_id": second["request_id"], "label": wrong},
                ]
            },
        )
        assert (accepted.status_code, accepted.json()) == (200, {"accepted": 2})
        unknown = client.post("/feedback", json={"feedback": [{"request_id": request_id, "label": "cat"}]})
        assert unknown.status_code == 400
        assert unknown.json()["error"].startswith("feedback.0.label: 'cat' is not a label of this model (labels: 0, 1")
        shaped = client.post("/feedback", json={"feedback": [{"request_id": "12", "label": "1"}]})
        assert shaped.status_code == 400
        assert shaped.json()["error"].startswith("feedback.0.request_id: String should match pattern")
    with served_bento.client(authenticated=False) as anonymous:
        refused = anonymous.post("/feedback", json={"feedback": [{"request_id": request_id, "label": "1"}]})
    assert refused.status_code == 401
    assert refused.json()["error"] == "Missing or wrong API key: send the header 'Authorization: Bearer <key>'."

    store = FolderPredictionStore(served_bento.home / "predictions")
    feedback = _wait_for(
        lambda: (found := read_feedback(substore(store, FEEDBACK))) and (second["request_id"], 0) in found and found,
        "the feedback",
    )
    assert feedback[(request_id, 0)] == true_label
    day = dt.datetime.now(dt.UTC).date()
    logged = _wait_for(
        lambda: (log := read_day(store, day)) and second["request_id"] in set(log.records["request_id"]) and log,
        "the logged predictions",
    )
    mine = logged.records[logged.records["request_id"].isin([request_id, second["request_id"]])]
    [found] = live_accuracy(mine, feedback)
    assert (found.model_version, found.labelled, found.correct) == (
        served_bento.model_tag,
        2,
        int(predicted == true_label),
    )


def test_live_accuracy_is_per_model_version_and_ignores_unlabelled_predictions() -> None:
    records = pd.DataFrame(
        {
            "model_version": ["m:1", "m:1", "m:1", "m:2"],
            "request_id": ["a" * 32, "a" * 32, "b" * 32, "c" * 32],
            "index": [0, 1, 0, 0],
            "label": ["cat", "dog", "cat", "dog"],
        }
    )
    feedback = {("a" * 32, 0): "cat", ("a" * 32, 1): "cat", ("c" * 32, 0): "dog", ("d" * 32, 0): "cat"}
    found = live_accuracy(records, feedback)
    assert [f.to_dict() for f in found] == [
        {"model_version": "m:1", "labelled": 2, "correct": 1, "accuracy": 0.5},
        {"model_version": "m:2", "labelled": 1, "correct": 1, "accuracy": 1.0},
    ]
    assert live_accuracy(records, {}) == []


def _production_version() -> None:
    """A production version with the labels cat and dog, and one prediction of it logged (request 'e' * 32)."""
    with open_registry() as models:
        number = models.register(new_version(1), actor="test").version.number
        models.record_gate(number, GateDecision(True, "test verdict"), "run-1")
        models.promote(number, "production", actor="test")


def _log_prediction(home: Path, request_id: str, index: int, tag: str = "image-classifier:v1") -> None:
    record = {**prediction_record(tag, "cat", 0.9, _STATS, "/predict"), "request_id": request_id, "index": index}
    folder = home / "predictions"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{dt.datetime.now(dt.UTC).date()}.{os.getpid()}.jsonl").write_text(json.dumps(record) + "\n")


_STATS = {"format": "PNG", "width": 8, "height": 8, "mode": "L", "brightness": 0.5, "contrast": 0.2}


def test_mlops_feedback_records_labels_from_a_csv_file_and_refuses_a_bad_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    _production_version()
    _log_prediction(tmp_path / "home", "e" * 32, 0)
    good = tmp_path / "labels.csv"
    # A spreadsheet's export: a byte-order mark before the header.
    good.write_text(f"\ufeffrequest_id,index,label\n{'e' * 32},0,cat\n{'f' * 32},2,dog\n", encoding="utf-8")
    assert main(["feedback", str(good)]) == 0
    # One consistent sentence: both labels are recorded, one of them matches no logged prediction.
    assert capsys.readouterr().out == (
        f"Recorded 2 label(s) in {tmp_path / 'home' / 'predictions' / FEEDBACK}; 1 of them match no logged "
        "prediction yet (only a sample of requests is logged: prediction_log_sample_rate); `mlops monitor` reports "
        "live accuracy for the others.\n"
    )
    assert main(["feedback", "--label", "a" * 32, "dog"]) == 0
    found = read_feedback(FolderPredictionStore(tmp_path / "home" / "predictions" / FEEDBACK))
    assert found == {("e" * 32, 0): "cat", ("f" * 32, 2): "dog", ("a" * 32, 0): "dog"}

    bad = tmp_path / "bad.csv"
    bad.write_text("request_id,label\n" + f"{'c' * 32},cat\n" + "not-an-id,cat\n")
    assert main(["feedback", str(bad)]) == 2
    assert capsys.readouterr().err == (
        f"error: feedback file {bad}: row 2: request id 'not-an-id' is not a request id (32 hex characters, as the "
        "service returns in `request_id`)\n"
    )
    columns = tmp_path / "columns.csv"
    columns.write_text("id,label\nx,cat\n")
    assert main(["feedback", str(columns)]) == 2
    assert "row 1: expected the columns request_id, label[, index]" in capsys.readouterr().err


def test_mlops_feedback_refuses_a_label_the_model_lacks_and_records_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    assert main(["feedback", "--label", "a" * 32, "cat"]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: command line: --label 1: request {'a' * 32} image 0 matches no logged prediction and no version is in "
        "production in local to check label 'cat' against"
    )
    _production_version()
    # The logged prediction names a version: its labels decide (here the same as production's).
    _log_prediction(home, "e" * 32, 1)
    assert main(["feedback", "--label", "e" * 32, "bird", "--index", "1"]) == 2
    assert capsys.readouterr().err.startswith(
        "error: command line: --label 1: 'bird' is not a label of version 1 (image-classifier:v1) (labels: cat, dog)"
    )
    assert read_feedback(FolderPredictionStore(home / "predictions" / FEEDBACK)) == {}


def test_mlops_feedback_takes_more_than_a_request_body_of_rows_and_names_bad_json_lines_by_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    _production_version()
    many = tmp_path / "many.jsonl"
    many.write_text("".join(json.dumps({"request_id": f"{n:032x}", "label": "dog"}) + "\n" for n in range(1500)))
    assert main(["feedback", str(many)]) == 0
    assert capsys.readouterr().out == (
        f"Recorded 1500 label(s) in {home / 'predictions' / FEEDBACK}; 1500 of them match no logged prediction yet "
        "(only a sample of requests is logged: prediction_log_sample_rate); `mlops monitor` reports live accuracy "
        "for the others.\n"
    )
    assert len(read_feedback(FolderPredictionStore(home / "predictions" / FEEDBACK))) == 1500

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"request_id": "a" * 32, "label": "dog"}) + "\n\n{not json\n")
    assert main(["feedback", str(broken)]) == 2
    assert capsys.readouterr().err.startswith(
        f"error: feedback file {broken}: line 3: not JSON (Expecting property name enclosed in double quotes"
    )
    shaped = tmp_path / "shaped.jsonl"
    shaped.write_text("\n" + json.dumps({"request_id": "a" * 32, "label": "dog", "index": "x" * 200}) + "\n")
    assert main(["feedback", str(shaped)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: feedback file {shaped}: line 2: index: Input should be a valid integer (got 'xxx")
    assert "x" * 100 not in err


def test_mlops_feedback_names_a_bad_request_id_in_words(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    _production_version()
    assert main(["feedback", "--label", "1234", "cat"]) == 2
    assert capsys.readouterr().err == (
        "error: command line: --label 1: request id '1234' is not a request id (32 hex characters, as the service "
        "returns in `request_id`)\n"
    )


def test_mlops_feedback_reports_every_bad_row_up_to_twenty_with_the_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    _production_version()
    bad = tmp_path / "bad.csv"
    # Row 1 is good; rows 2-26 have a bad id, and row 3 a bad index too (found while reading the file).
    rows = [f"{'a' * 32},0,cat"] + [f"bad{n},0,cat" for n in range(2, 27)]
    rows[2] = "bad3,x,cat"
    bad.write_text("request_id,index,label\n" + "\n".join(rows) + "\n")
    assert main(["feedback", str(bad)]) == 2
    shown = [
        f"row {n}: request id 'bad{n}' is not a request id (32 hex characters, as the service returns in `request_id`)"
        for n in range(2, 27)
    ]
    shown[1] = "row 3: index = 'x': expected an integer >= 0"
    assert capsys.readouterr().err == (
        f"error: feedback file {bad}: 25 problems, nothing recorded; " + "; ".join(shown[:20]) + "; and 5 more\n"
    )
    assert read_feedback(FolderPredictionStore(home / "predictions" / FEEDBACK)) == {}


def test_mlops_feedback_refuses_an_index_outside_the_logged_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    _production_version()
    # A logged request of 16 images, as the service logs a sampled request: every image.
    folder = home / "predictions"
    folder.mkdir(parents=True)
    records = [
        {**prediction_record("image-classifier:v1", "cat", 0.9, _STATS, "/predict"), "request_id": "b" * 32, "index": n}
        for n in range(16)
    ]
    (folder / f"{dt.datetime.now(dt.UTC).date()}.{os.getpid()}.jsonl").write_text(
        "".join(json.dumps(record) + "\n" for record in records)
    )
    assert main(["feedback", "--label", "b" * 32, "dog", "--index", "99"]) == 2
    assert capsys.readouterr().err == (
        f"error: command line: --label 1: index 99 is outside request {'b' * 32}: it had 16 image(s) (indexes 0 to "
        "15)\n"
    )
    assert read_feedback(FolderPredictionStore(folder / FEEDBACK)) == {}
    assert main(["feedback", "--label", "b" * 32, "dog", "--index", "15"]) == 0
    assert capsys.readouterr().out == (
        f"Recorded 1 label(s) for logged predictions in {folder / FEEDBACK}; `mlops monitor` reports live accuracy.\n"
    )
    assert read_feedback(FolderPredictionStore(folder / FEEDBACK)) == {("b" * 32, 15): "dog"}
