"""After a deployment: the new version's predicted labels and confidences against the previous version's, over windows
of the same length on either side of the switch, found from the logged records' `model_version` and `timestamp`.

The switch is the monitored version's first logged record in the logs read; the previous version is the one that
answered most in the window before it. Both windows last `monitoring.comparison_window_hours`, or as long as the new
version has been in service when that is shorter (so the two periods stay comparable). Evidently measures the
distances, graded with the same thresholds as drift against the baseline (`categories`, `statistics`).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.lib.monitoring.drift import JENSEN_SHANNON, METHOD_NAMES, WASSERSTEIN
from mlops_assets.lib.monitoring.logs import PredictionLogReader, read_day
from mlops_assets.lib.monitoring.settings import MonitoringSettings, Thresholds
from mlops_assets.lib.monitoring.verdicts import (
    COMPARED,
    DRIFT,
    NO_DRIFT,
    NO_MODEL_VERSION,
    NOT_ENOUGH_DATA,
    SEVERE_DRIFT,
    SignalVerdict,
    grade,
)

COMPARED_LABEL = "comparison.predicted_label"
COMPARED_CONFIDENCE = "comparison.confidence"
COMPARISON_SIGNALS = (COMPARED_LABEL, COMPARED_CONFIDENCE)
# No record of another model version before the monitored version's first one: nothing to compare it with.
NO_EARLIER_VERSION = "no earlier version in the logs"


@dataclass
class VersionComparison:
    """The verdict per compared signal, the switch and both windows (None where not found), and the counts."""

    verdicts: list[SignalVerdict]
    model_tag: str
    previous_tag: str = ""
    switch: dt.datetime | None = None
    window_hours: float = 0.0
    before_count: int = 0
    after_count: int = 0
    # Records without a readable timestamp (left out: they cannot be placed in a window).
    untimed: int = 0

    @property
    def overall(self) -> str:
        """Severe drift over drift over what could not be compared (its own verdict) over no drift."""
        found = [verdict.verdict for verdict in self.verdicts]
        if SEVERE_DRIFT in found or DRIFT in found:
            return SEVERE_DRIFT if SEVERE_DRIFT in found else DRIFT
        gaps = [verdict for verdict in found if verdict not in COMPARED]
        return gaps[0] if gaps else NO_DRIFT

    def describe(self) -> str:
        """One line: what was compared with what, and the overall verdict."""
        if self.switch is None or not self.previous_tag:
            return f"{self.overall}: {self.verdicts[0].detail}"
        return (
            f"{self.overall}: {self.model_tag} ({self.after_count} prediction(s) in the {self.window_hours:.3g} h "
            f"after its first record at {self.switch.isoformat(timespec='seconds')}) against {self.previous_tag} "
            f"({self.before_count} in the {self.window_hours:.3g} h before)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "model_tag": self.model_tag,
            "previous_tag": self.previous_tag,
            "switch": self.switch.isoformat() if self.switch else None,
            "window_hours": round(self.window_hours, 6),
            "before_count": self.before_count,
            "after_count": self.after_count,
            "untimed_records": self.untimed,
            "signals": [verdict.to_dict() for verdict in self.verdicts],
        }


def _all(verdict: str, detail: str) -> list[SignalVerdict]:
    return [SignalVerdict(signal, verdict, detail=detail) for signal in COMPARISON_SIGNALS]


def _measure(before: pd.DataFrame, after: pd.DataFrame, settings: MonitoringSettings) -> list[SignalVerdict]:
    """Evidently's distances of `after` (current) from `before` (reference): label and confidence."""
    # Imported here: Evidently takes seconds to import, and only monitoring runs need it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    tests: list[tuple[str, str, str, Thresholds]] = [
        ("label", COMPARED_LABEL, JENSEN_SHANNON, settings.categories),
        ("confidence", COMPARED_CONFIDENCE, WASSERSTEIN, settings.statistics),
    ]
    definition = DataDefinition(numerical_columns=["confidence"], categorical_columns=["label"])
    report = Report([ValueDrift(column=column, method=method, threshold=t.drift) for column, _, method, t in tests])

    def dataset(frame: pd.DataFrame) -> Any:
        table = pd.DataFrame({"label": frame["label"].astype(str), "confidence": frame["confidence"].astype(float)})
        return Dataset.from_pandas(table.reset_index(drop=True), data_definition=definition)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        results = report.run(current_data=dataset(after), reference_data=dataset(before)).dict()["metrics"]
    verdicts = []
    for (column, signal, method, thresholds), result in zip(tests, results, strict=True):
        value = float(result["value"])
        if not math.isfinite(value):
            # The normed Wasserstein distance divides by the previous version's spread; none (every confidence the
            # same) leaves no scale to measure the move in.
            detail = (
                f"the previous version's {column} did not vary in the window before the switch; no scale to compare"
            )
            verdicts.append(SignalVerdict(signal, NOT_ENOUGH_DATA, detail=detail))
            continue
        detail = f"{len(after)} prediction(s) after the switch against {len(before)} before"
        verdicts.append(grade(signal, value, METHOD_NAMES[method], thresholds.drift, thresholds.severe, detail))
    return verdicts


def compare_with_previous(
    records: pd.DataFrame, model_tag: str, settings: MonitoringSettings, until: dt.datetime
) -> VersionComparison:
    """Compare `model_tag`'s records (columns model_version, timestamp, label, confidence; ISO timestamps, UTC) in
    the window after its first one with the previous version's in the window before, windows of
    `settings.comparison_window_hours` cut short at `until` (both alike). "No earlier version in the logs" when no
    other version answered before the switch, "not enough data" when either window holds fewer than
    `settings.min_predictions` records; never an exception for what the logs hold. Records at or after `until` are
    left out."""
    times = pd.to_datetime(
        records.get("timestamp", pd.Series(dtype=object)), utc=True, errors="coerce", format="ISO8601"
    )
    timed = records.assign(time=times)[times.notna()]
    untimed = len(records) - len(timed)
    # What was logged after `until` (a later day's records in this day's file) belongs to a later comparison.
    timed = timed[timed["time"] < until]
    ours = timed[timed["model_version"] == model_tag]
    if ours.empty:
        detail = f"no prediction of {model_tag} with a timestamp in the logs read"
        return VersionComparison(_all(NOT_ENOUGH_DATA, detail), model_tag, untimed=untimed)
    switch = ours["time"].min().to_pydatetime()
    earlier = timed[(timed["model_version"] != model_tag) & (timed["time"] < switch)]
    if earlier.empty:
        start = timed["time"].min().to_pydatetime().isoformat(timespec="seconds")
        detail = (
            f"no record of another model version before {model_tag}'s first record at "
            f"{switch.isoformat(timespec='seconds')} (logs read from {start})"
        )
        return VersionComparison(_all(NO_EARLIER_VERSION, detail), model_tag, switch=switch, untimed=untimed)
    window = dt.timedelta(hours=settings.comparison_window_hours)
    length = max(min(window, until - switch), dt.timedelta(0))
    hours = length.total_seconds() / 3600
    before_window = earlier[earlier["time"] >= switch - length]
    # The previous version: the one that answered most just before the switch (else the last one seen before it).
    if before_window.empty:
        previous = str(earlier.sort_values("time")["model_version"].iloc[-1])
    else:
        previous = str(before_window["model_version"].value_counts().index[0])
    before = before_window[before_window["model_version"] == previous]
    after = ours[ours["time"] < switch + length]
    found = VersionComparison([], model_tag, previous, switch, hours, len(before), len(after), untimed)
    if len(before) < settings.min_predictions or len(after) < settings.min_predictions:
        found.verdicts = _all(
            NOT_ENOUGH_DATA,
            f"{len(after)} prediction(s) of {model_tag} in the {hours:.3g} h after its first record at "
            f"{switch.isoformat(timespec='seconds')} and {len(before)} of {previous} in the {hours:.3g} h before; "
            f"at least {settings.min_predictions} needed on each side (monitoring.min_predictions; windows of "
            f"monitoring.comparison_window_hours = {settings.comparison_window_hours:g}, cut short to the time since "
            "the switch)",
        )
        return found
    found.verdicts = _measure(before, after, settings)
    return found


def comparison_days(day: dt.date, settings: MonitoringSettings) -> tuple[dt.date, dt.date]:
    """The days of log to read for `day`'s comparison: back far enough for a switch whose window after it reaches
    into `day` and for the window before that switch (twice the window), through `day`."""
    days_back = math.ceil(2 * settings.comparison_window_hours / 24)
    return day - dt.timedelta(days=days_back), day


def read_days(reader: PredictionLogReader, first: dt.date, last: dt.date, stage: str | None = None) -> pd.DataFrame:
    """The usable records of the log files of `first` to `last` (inclusive) of deployment `stage` (None: every
    stage), one table (damaged lines and malformed records are left out as for one day; the day's own monitoring
    names them)."""
    days = [first + dt.timedelta(days=n) for n in range((last - first).days + 1)]
    frames = [read_day(reader, day, stage).records for day in days]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return pd.DataFrame(columns=["model_version", "timestamp", "label", "confidence"])
    return pd.concat(frames, ignore_index=True)


def compare_deployment(
    reader: PredictionLogReader,
    model_tag: str | None,
    day: dt.date,
    settings: MonitoringSettings,
    now: dt.datetime,
    stage: str | None = None,
) -> VersionComparison:
    """The comparison recorded with `day`'s monitoring: `model_tag` (None: no version monitored) against the version
    before it in the same deployment `stage` (None: every stage), from the logs of the days `comparison_days` names,
    windows cut short at the end of `day` or `now`."""
    if model_tag is None:
        return VersionComparison(_all(NO_MODEL_VERSION, "no model version to compare"), "")
    first, last = comparison_days(day, settings)
    end_of_day = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
    records = read_days(reader, first, last, stage)
    return compare_with_previous(records, model_tag, settings, min(end_of_day, now))
