"""One day of one model version under monitoring: which records count, whether they can be compared, the verdicts."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from mlops_assets.lib.monitoring.baseline import MonitoringBaseline
from mlops_assets.lib.monitoring.drift import SIGNALS as DRIFT_SIGNALS
from mlops_assets.lib.monitoring.drift import DriftResult, measure_drift
from mlops_assets.lib.monitoring.embedding_projection import compact_embedding
from mlops_assets.lib.monitoring.embeddings import EMBEDDING, embedding_drift
from mlops_assets.lib.monitoring.logs import DayLog, embeddings_of
from mlops_assets.lib.monitoring.settings import MonitoringSettings
from mlops_assets.lib.monitoring.verdicts import (
    NO_BASELINE,
    NO_MODEL_VERSION,
    NOT_ENOUGH_DATA,
    NOT_MONITORED,
    SignalVerdict,
    undetermined,
    worst,
)

# Every signal graded per day, in the order reported.
SIGNALS = (*DRIFT_SIGNALS, EMBEDDING)


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
    baseline_damage: str = "",
) -> DayAssessment:
    """Compare the day's records of `version` with its `baseline`. Without a version, a baseline (or with a damaged
    one: `baseline_damage` says which file and why) or enough records, every signal gets that as its verdict with the
    numbers behind it: never "no drift" for what was not compared."""
    problems = log.problems()
    if version is None:
        # The reason may be a sentence of its own ("There is no version 7 ...; see `mlops models list`.").
        reason = no_version_reason.rstrip(". ") + _others(log.per_model())
        verdicts = undetermined(list(SIGNALS), NO_MODEL_VERSION, reason)
        return DayAssessment(log.day, None, verdicts, 0, log.per_model(), problems)
    current = log.for_model(version.model_tag)
    others = {tag: count for tag, count in log.per_model().items() if tag != version.model_tag}
    count = len(current)
    logged = f"{count} prediction(s) of version {version.number} ({version.model_tag}) logged on {log.day}"
    if baseline_damage or baseline is None or baseline.num_inputs == 0 or baseline.num_predictions == 0:
        why = (
            baseline_damage
            if baseline_damage
            else "none was built for its model (materialize monitoring_baseline: `mlops run` builds it with the model)"
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
    verdicts = [*drift.verdicts, embedding_verdict(current, baseline, settings)]
    return DayAssessment(log.day, version, verdicts, count, others, problems, drift)


def embedding_verdict(
    current: pd.DataFrame, baseline: MonitoringBaseline, settings: MonitoringSettings
) -> SignalVerdict:
    """Embedding drift of the day's logged embeddings against the baseline's held-out ones (compacted alike);
    "not monitored" when the plug-in has no embedding, the service logs none by configuration or logged none that
    day (sampled ones too few are "not enough data")."""
    reference = baseline.embeddings()
    if reference is None:
        plugin = baseline.plugin or "of this model (its baseline predates embeddings: rebuild monitoring_baseline)"
        return SignalVerdict(EMBEDDING, NOT_MONITORED, detail=f"no embedding from plug-in {plugin}")
    if settings.capture.embeddings.sample_rate == 0:
        detail = "the service logs no embeddings (monitoring.capture.embeddings.sample_rate is 0)"
        return SignalVerdict(EMBEDDING, NOT_MONITORED, detail=detail)
    logged = embeddings_of(current)
    if len(logged) == 0:
        # A service built before embeddings were logged, or one whose bento was built with a sample rate of 0, is
        # a signal this deployment lacks, not a gap in the day: the other signals' verdicts stand on their own.
        detail = (
            f"the service logged no embeddings: none of the {len(current)} prediction(s) carries one (a bento built "
            "before embedding logging, or monitoring.capture.embeddings.sample_rate 0 when it was built)"
        )
        return SignalVerdict(EMBEDDING, NOT_MONITORED, detail=detail)
    dims = logged.shape[1]
    return embedding_drift(logged, compact_embedding(reference, dims), settings.embedding, settings.min_embeddings)
