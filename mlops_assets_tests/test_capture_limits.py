"""What the capture writers keep of an answered request: hard cases (at most `hard_cases.max_per_day` per process and
UTC day, counted afresh each day) and the inputs of alert labels, each as one full record."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import types
from pathlib import Path

import pytest

from mlops_assets.lib.monitoring import capture as capture_module
from mlops_assets.lib.monitoring.capture import ALERT_INPUTS, HARD_CASES, Capture
from mlops_assets.lib.monitoring.settings import CaptureSettings, HardCaseSettings
from mlops_assets.lib.serving.prediction_store import FolderPredictionStore

REQUEST_ID = "0123456789abcdef0123456789abcdef"
MODEL = "classifier:v1"


def _kept(folder: Path) -> list[dict]:
    """The records written under `folder`, in order, without their timestamps (checked apart)."""
    records = [json.loads(line) for path in sorted(folder.rglob("*.jsonl")) for line in path.read_text().splitlines()]
    for record in records:
        dt.datetime.fromisoformat(record.pop("timestamp"))  # an ISO 8601 time
    return records


def _record(index: int, data: bytes, label: str, confidence: float) -> dict:
    return {
        "stage": "unstaged",
        "model_version": MODEL,
        "endpoint": "/predict",
        "request_id": REQUEST_ID,
        "index": index,
        "label": label,
        "confidence": confidence,
        "bytes": len(data),
        "image": base64.b64encode(data).decode(),
    }


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The capture's clock, set by the test; local time is far from UTC, so a local-midnight reset would show."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    now = [dt.datetime(2026, 12, 1, 23, 59, 59, tzinfo=dt.UTC).timestamp()]
    monkeypatch.setattr(capture_module, "time", types.SimpleNamespace(time=lambda: now[0]))
    yield now
    monkeypatch.undo()
    time.tzset()


def test_at_most_max_per_day_hard_cases_then_again_the_next_utc_day(tmp_path: Path, clock: list[float]) -> None:
    capture = Capture(FolderPredictionStore(tmp_path), CaptureSettings(hard_cases=HardCaseSettings(max_per_day=2)))
    # Three low-confidence images and a confident one: the confident one is no hard case, the third is over the bound.
    uploads = [b"first", b"second", b"third", b"fourth"]
    capture.keep(MODEL, "/predict", REQUEST_ID, uploads, ["cat", "dog", "cat", "dog"], [0.2, 0.3, 0.4, 0.9])
    clock[0] += 1  # midnight UTC (05:30 in Kolkata): a new day's bound
    capture.keep(MODEL, "/predict", REQUEST_ID, [b"fifth"], ["dog"], [0.1])
    capture.close()
    assert _kept(tmp_path / HARD_CASES) == [
        _record(0, b"first", "cat", 0.2),
        _record(1, b"second", "dog", 0.3),
        _record(0, b"fifth", "dog", 0.1),
    ]
    assert _kept(tmp_path / ALERT_INPUTS) == []


def test_an_input_both_an_alert_and_a_hard_case_is_kept_as_each(tmp_path: Path, clock: list[float]) -> None:
    settings = CaptureSettings(alert_labels={"drone": 0.3}, hard_cases=HardCaseSettings(confidence=0.5))
    capture = Capture(FolderPredictionStore(tmp_path), settings)
    capture.keep(MODEL, "/predict", REQUEST_ID, [b"low drone", b"bird"], ["drone", "bird"], [0.4, 0.95])
    capture.close()
    assert _kept(tmp_path / HARD_CASES) == [_record(0, b"low drone", "drone", 0.4)]
    assert _kept(tmp_path / ALERT_INPUTS) == [{**_record(0, b"low drone", "drone", 0.4), "alert_confidence": 0.3}]


def test_hard_cases_are_sampled_per_image(tmp_path: Path, clock: list[float]) -> None:
    # At a sample rate of 0.5 about half the hard cases are kept; the seed makes the choice repeatable.
    settings = CaptureSettings(hard_cases=HardCaseSettings(sample_rate=0.5))
    capture = Capture(FolderPredictionStore(tmp_path), settings, seed=3)
    uploads = [bytes([index]) for index in range(200)]
    capture.keep(MODEL, "/predict", REQUEST_ID, uploads, ["cat"] * 200, [0.1] * 200)
    capture.close()
    kept = [record["index"] for record in _kept(tmp_path / HARD_CASES)]
    assert 70 <= len(kept) <= 130
    assert kept == sorted(set(kept))
