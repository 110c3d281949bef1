"""After a deployment: the new version's labels and confidences against the previous version's, in windows of the
same length on either side of the switch, read from log files as the service writes them (no server)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wasserstein_distance

from mlops_assets.lib.monitoring.comparison import (
    COMPARISON_SIGNALS,
    NO_EARLIER_VERSION,
    compare_deployment,
    comparison_days,
)
from mlops_assets.lib.monitoring.settings import MonitoringSettings
from mlops_assets.lib.monitoring.verdicts import NO_DRIFT, NO_MODEL_VERSION, NOT_ENOUGH_DATA, SEVERE_DRIFT
from mlops_assets.lib.serving.prediction_store import FolderPredictionStore
from mlops_assets_tests.monitoring_fixtures import write_log

OLD, NEW = "image-classifier:old", "image-classifier:new"
DAY = dt.date(2026, 11, 3)
# The new version's first answer: 06:00 on DAY, so the 24-hour window before it reaches into the previous day's file.
SWITCH = dt.datetime(2026, 11, 3, 6, tzinfo=dt.UTC)
LATER = dt.datetime(2026, 11, 10, tzinfo=dt.UTC)
SETTINGS = MonitoringSettings()


def _records(tag: str, start: dt.datetime, hours: float, count: int, seed: int, shifted: bool = False) -> list[dict]:
    """`count` records of `tag` spread evenly over `hours` from `start`, the first exactly at `start`: labels 0-9 and
    confident answers, or (shifted) labels 0 and 1 only and hesitant ones."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["0", "1"] if shifted else [str(d) for d in range(10)], count)
    confidences = rng.beta(2, 2, count) if shifted else rng.beta(8, 1, count)
    step = hours * 3600 / count
    return [
        {
            "timestamp": (start + dt.timedelta(seconds=n * step)).isoformat(timespec="milliseconds"),
            "model_version": tag,
            "endpoint": "/predict",
            "request_id": f"{seed:08x}{n:024x}",
            "index": 0,
            "label": str(label),
            "confidence": round(float(confidence), 6),
            "format": "PNG",
            "width": 8,
            "height": 8,
            "mode": "L",
            "brightness": 0.3,
            "contrast": 0.4,
        }
        for n, (label, confidence) in enumerate(zip(labels, confidences, strict=True))
    ]


def _write_by_day(folder: Path, records: list[dict]) -> None:
    """One file per UTC day, as the service rotates its log at midnight."""
    days: dict[str, list[dict]] = {}
    for record in records:
        days.setdefault(record["timestamp"][:10], []).append(record)
    for day, found in days.items():
        write_log(folder, dt.date.fromisoformat(day), found)


def _compare(folder: Path, tag: str | None = NEW, now: dt.datetime = LATER, day: dt.date = DAY):
    return compare_deployment(FolderPredictionStore(folder), tag, day, SETTINGS, now)


def test_the_logs_read_reach_back_twice_the_window() -> None:
    assert comparison_days(DAY, SETTINGS) == (dt.date(2026, 11, 1), DAY)
    assert comparison_days(DAY, MonitoringSettings(comparison_window_hours=36.0)) == (dt.date(2026, 10, 31), DAY)


def test_the_same_behaviour_after_the_switch_is_no_drift_over_equal_windows_across_day_files(tmp_path: Path) -> None:
    # The old version answered for two days; only its last 24 hours count, and the new one's first 24 hours. The
    # day after the switch is graded: its end closes the window (on the switch's own day it would be 18 hours).
    old = _records(OLD, SWITCH - dt.timedelta(hours=48), 48, 600, seed=1)
    new = _records(NEW, SWITCH, 48, 600, seed=2)
    _write_by_day(tmp_path, old + new)
    comparison = _compare(tmp_path, day=DAY + dt.timedelta(days=1))
    assert (comparison.model_tag, comparison.previous_tag, comparison.switch) == (NEW, OLD, SWITCH)
    assert (comparison.window_hours, comparison.before_count, comparison.after_count) == (24.0, 300, 300)
    assert [(v.signal, v.verdict) for v in comparison.verdicts] == [(s, NO_DRIFT) for s in COMPARISON_SIGNALS]
    label, confidence = comparison.verdicts
    assert (label.method, label.drift_threshold, label.severe_threshold) == ("Jensen-Shannon distance", 0.25, 0.5)
    before = pd.DataFrame(old[300:])
    after = pd.DataFrame(new[:300])
    expected = wasserstein_distance(before["confidence"], after["confidence"]) / before["confidence"].std(ddof=0)
    assert confidence.statistic == pytest.approx(expected, rel=1e-6)
    assert confidence.detail == "300 prediction(s) after the switch against 300 before"
    assert comparison.describe() == (
        f"no drift: {NEW} (300 prediction(s) in the 24 h after its first record at 2026-11-03T06:00:00+00:00) "
        f"against {OLD} (300 in the 24 h before)"
    )
    assert comparison.to_dict()["switch"] == "2026-11-03T06:00:00+00:00"


def test_a_new_version_that_answers_differently_is_severe_drift_on_labels_and_confidence(tmp_path: Path) -> None:
    _write_by_day(
        tmp_path,
        _records(OLD, SWITCH - dt.timedelta(hours=24), 24, 300, seed=1)
        + _records(NEW, SWITCH, 24, 300, seed=2, shifted=True),
    )
    comparison = _compare(tmp_path, day=DAY + dt.timedelta(days=1))
    assert [(v.signal, v.verdict) for v in comparison.verdicts] == [(s, SEVERE_DRIFT) for s in COMPARISON_SIGNALS]
    assert comparison.overall == SEVERE_DRIFT
    assert comparison.verdicts[0].statistic >= 0.5


def test_a_window_cut_short_by_now_keeps_both_sides_equal_and_too_few_is_not_enough_data(tmp_path: Path) -> None:
    _write_by_day(
        tmp_path,
        _records(OLD, SWITCH - dt.timedelta(hours=24), 24, 480, seed=1) + _records(NEW, SWITCH, 6, 120, seed=2),
    )
    # Six hours after the switch: six hours on each side (120 records of the old version), not 24 against 6.
    comparison = _compare(tmp_path, now=SWITCH + dt.timedelta(hours=6))
    assert (comparison.window_hours, comparison.before_count, comparison.after_count) == (6.0, 120, 120)
    assert {v.verdict for v in comparison.verdicts} == {NOT_ENOUGH_DATA}
    assert comparison.verdicts[0].detail == (
        f"120 prediction(s) of {NEW} in the 6 h after its first record at 2026-11-03T06:00:00+00:00 and 120 of "
        f"{OLD} in the 6 h before; at least 200 needed on each side (monitoring.min_predictions; windows of "
        "monitoring.comparison_window_hours = 24, cut short to the time since the switch)"
    )


def test_a_version_with_no_earlier_one_in_the_logs_says_so(tmp_path: Path) -> None:
    _write_by_day(tmp_path, _records(NEW, SWITCH, 24, 300, seed=2))
    comparison = _compare(tmp_path)
    assert {v.verdict for v in comparison.verdicts} == {NO_EARLIER_VERSION}
    assert comparison.verdicts[0].detail == (
        f"no record of another model version before {NEW}'s first record at 2026-11-03T06:00:00+00:00 (logs read "
        "from 2026-11-03T06:00:00+00:00)"
    )
    assert comparison.describe() == f"{NO_EARLIER_VERSION}: {comparison.verdicts[0].detail}"


def test_empty_cut_short_or_untimed_logs_and_no_version_are_verdicts_not_crashes(tmp_path: Path) -> None:
    write_log(tmp_path / "empty", DAY, [], tail='{"model_version": "image-cl')
    empty = _compare(tmp_path / "empty")
    assert [(v.signal, v.verdict) for v in empty.verdicts] == [(s, NOT_ENOUGH_DATA) for s in COMPARISON_SIGNALS]
    assert empty.verdicts[0].detail == f"no prediction of {NEW} with a timestamp in the logs read"
    untimed = [{**record, "timestamp": "yesterday"} for record in _records(NEW, SWITCH, 24, 300, seed=2)]
    write_log(tmp_path / "untimed", DAY, untimed)
    found = _compare(tmp_path / "untimed")
    assert (found.overall, found.untimed) == (NOT_ENOUGH_DATA, 300)
    nothing = _compare(tmp_path / "empty", tag=None)
    assert [(v.signal, v.verdict, v.detail) for v in nothing.verdicts] == [
        (s, NO_MODEL_VERSION, "no model version to compare") for s in COMPARISON_SIGNALS
    ]
    assert (empty.overall, nothing.overall) == (NOT_ENOUGH_DATA, NO_MODEL_VERSION)
