"""One day of one model version under monitoring: which records count, whether they can be compared, the verdicts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from mlops_assets.lib.monitoring.baseline import MonitoringBaseline
from mlops_assets.lib.monitoring.drift import SIGNALS, DriftResult, measure_drift
from mlops_assets.lib.monitoring.logs import DayLog
from mlops_assets.lib.monitoring.settings import MonitoringSettings
from mlops_assets.lib.monitoring.verdicts import (
    NO_BASELINE,
    NO_MODEL_VERSION,
    NOT_ENOUGH_DATA,
    SignalVerdict,
    undetermined,
    worst,
)


@dataclass(frozen=True)
class MonitoredVersion:
    """The registry version whose traffic is monitored: its number, model tag (what the service logs) and weights."""

    number: int
    model_tag: str
    weights_sha256: str


@dataclass
class DayAssessment:
    """The verdict per signal for one day and version, with what was read and left out."""

    day: dt.date
    version: MonitoredVersion | None
    verdicts: list[SignalVerdict]
    num_predictions: int = 0
    # Usable records of other model versions in the day's log (not compared): model tag -> count.
    other_versions: dict[str, int] = field(default_factory=dict)
    log_problems: list[str] = field(default_factory=list)
    drift: DriftResult | None = None

    @property
    def overall(self) -> str:
        return worst(self.verdicts)


def _others(others: dict[str, int]) -> str:
    if not others:
        return ""
    listed = ", ".join(f"{tag} ({count})" for tag, count in others.items())
    return f"; records of other model versions, not compared: {listed}"


def assess_day(
    log: DayLog,
    version: MonitoredVersion | None,
    baseline: MonitoringBaseline | None,
    settings: MonitoringSettings,
    no_version_reason: str = "no model version to monitor",
) -> DayAssessment:
    """Compare the day's records of `version` with its `baseline`. Without a version, a baseline or enough records,
    every signal gets that as its verdict with the numbers behind it: never "no drift" for what was not compared."""
    problems = log.problems()
    if version is None:
        verdicts = undetermined(list(SIGNALS), NO_MODEL_VERSION, no_version_reason + _others(log.per_model()))
        return DayAssessment(log.day, None, verdicts, 0, log.per_model(), problems)
    current = log.for_model(version.model_tag)
    others = {tag: count for tag, count in log.per_model().items() if tag != version.model_tag}
    count = len(current)
    logged = f"{count} prediction(s) of version {version.number} ({version.model_tag}) logged on {log.day}"
    if baseline is None or baseline.num_inputs == 0 or baseline.num_predictions == 0:
        why = (
            "none was built for its model (materialize monitoring_baseline: `mlops run` builds it with the model)"
            if baseline is None
            else "its baseline holds no "
            + (
                "training images"
                if baseline.num_inputs == 0
                else "held-out predictions (validation and test were empty)"
            )
        )
        detail = f"no baseline for version {version.number}: {why}; {logged}{_others(others)}"
        return DayAssessment(
            log.day, version, undetermined(list(SIGNALS), NO_BASELINE, detail), count, others, problems
        )
    if count < settings.min_predictions:
        detail = f"{logged}; at least {settings.min_predictions} needed (monitoring.min_predictions){_others(others)}"
        if problems:
            detail += f"; left out: {'; '.join(problems)}"
        verdicts = undetermined(list(SIGNALS), NOT_ENOUGH_DATA, detail)
        return DayAssessment(log.day, version, verdicts, count, others, problems)
    drift = measure_drift(current, baseline.inputs(), baseline.predictions(), settings)
    return DayAssessment(log.day, version, drift.verdicts, count, others, problems, drift)
