"""The hard-case bound: at most `hard_cases.max_per_day` kept per process and UTC day, counted afresh each day."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from mlops_assets.lib.monitoring import capture as capture_module
from mlops_assets.lib.monitoring.capture import Capture
from mlops_assets.lib.monitoring.settings import CaptureSettings, HardCaseSettings
from mlops_assets.lib.serving.prediction_store import FolderPredictionStore

REQUEST_ID = "0123456789abcdef0123456789abcdef"


def _kept(folder: Path) -> list[dict]:
    return [json.loads(line) for path in sorted(folder.rglob("*.jsonl")) for line in path.read_text().splitlines()]


def test_at_most_max_per_day_hard_cases_then_again_the_next_utc_day(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    evening = dt.datetime(2026, 12, 1, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    clock = [evening]
    monkeypatch.setattr(capture_module.time, "time", lambda: clock[0])
    settings = CaptureSettings(hard_cases=HardCaseSettings(max_per_day=2))
    capture = Capture(FolderPredictionStore(tmp_path), settings, seed=0)
    # Three low-confidence images and a confident one: the confident one is no hard case, the third is over the bound.
    capture.keep("classifier:v1", "/predict", REQUEST_ID, [b"a", b"b", b"c", b"d"], ["x"] * 4, [0.2, 0.3, 0.4, 0.9])
    clock[0] = evening + 1  # midnight UTC: a new day's bound
    capture.keep("classifier:v1", "/predict", REQUEST_ID, [b"e"], ["x"], [0.1])
    capture.close()
    assert [(record["index"], record["bytes"]) for record in _kept(tmp_path)] == [(0, 1), (1, 1), (0, 1)]
