"""Drift of a day's logged predictions against a model's baseline, measured by Evidently, graded per signal.

Every signal uses a distance, not a p-value, so its size means the same at 200 predictions as at 200,000: the
Wasserstein distance in units of the baseline's standard deviation for numbers, the Jensen-Shannon distance for
categories, and the rise of the low-confidence share above the baseline's.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops_assets.lib.monitoring.settings import MonitoringSettings, Thresholds
from mlops_assets.lib.monitoring.verdicts import SignalVerdict, grade

INPUT_STATISTICS = ("brightness", "contrast", "width", "height")
INPUT_CATEGORIES = ("format", "mode")
WASSERSTEIN = "wasserstein"
JENSEN_SHANNON = "jensenshannon"
LOW_CONFIDENCE_METHOD = "low-confidence share above baseline"
PREDICTED_LABEL = "predicted_label"
CONFIDENCE = "confidence"
LOW_CONFIDENCE_SHARE = "low_confidence_share"
# Every signal, in the order they are reported.
SIGNALS = (
    *(f"input.{name}" for name in (*INPUT_STATISTICS, *INPUT_CATEGORIES)),
    PREDICTED_LABEL,
    CONFIDENCE,
    LOW_CONFIDENCE_SHARE,
)
METHOD_NAMES = {WASSERSTEIN: "Wasserstein distance (normed)", JENSEN_SHANNON: "Jensen-Shannon distance"}


@dataclass(frozen=True)
class _Column:
    """One Evidently drift test: the column, its signal name, method and thresholds."""

    column: str
    signal: str
    method: str
    thresholds: Thresholds


def _columns(settings: MonitoringSettings) -> list[_Column]:
    return [
        *(_Column(name, f"input.{name}", WASSERSTEIN, settings.statistics) for name in INPUT_STATISTICS),
        *(_Column(name, f"input.{name}", JENSEN_SHANNON, settings.categories) for name in INPUT_CATEGORIES),
        _Column("label", PREDICTED_LABEL, JENSEN_SHANNON, settings.categories),
        _Column("confidence", CONFIDENCE, WASSERSTEIN, settings.statistics),
    ]


@dataclass
class DriftResult:
    """The verdict per signal and the Evidently snapshot behind them (`save_html` writes its report)."""

    verdicts: list[SignalVerdict]
    snapshot: Any
    current_share_low: float
    reference_share_low: float

    def save_html(self, path: Path) -> None:
        self.snapshot.save_html(str(path))


def _reference(inputs: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """One reference table for one report: input rows (training images) and answer rows (held-out predictions) have
    different sources and lengths, so each leaves the other's columns empty; Evidently drops empty cells per column."""
    return pd.concat([inputs, predictions], ignore_index=True)


def measure_drift(
    current: pd.DataFrame, inputs: pd.DataFrame, predictions: pd.DataFrame, settings: MonitoringSettings
) -> DriftResult:
    """Grade every signal of `current` (logged records: the input statistics, label, confidence) against the
    baseline's `inputs` and `predictions`. Both must be non-empty (the caller reports "not enough data" or
    "no baseline" otherwise)."""
    # Imported here: Evidently takes seconds to import, and only monitoring runs need it.
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import InRangeValueCount, ValueDrift

    columns = _columns(settings)
    definition = DataDefinition(
        numerical_columns=[*INPUT_STATISTICS, "confidence"], categorical_columns=[*INPUT_CATEGORIES, "label"]
    )
    wanted = [*INPUT_STATISTICS, *INPUT_CATEGORIES, "label", "confidence"]
    drift_metrics = [ValueDrift(column=c.column, method=c.method, threshold=c.thresholds.drift) for c in columns]
    low = InRangeValueCount(column="confidence", left=0.0, right=settings.low_confidence)
    report = Report([*drift_metrics, low])
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Correlations between columns of the split reference table divide by zero; they are not used here.
        warnings.simplefilter("ignore", RuntimeWarning)
        snapshot = report.run(
            current_data=Dataset.from_pandas(current[wanted].reset_index(drop=True), data_definition=definition),
            reference_data=Dataset.from_pandas(_reference(inputs, predictions)[wanted], data_definition=definition),
        )
    results = snapshot.dict()["metrics"]
    verdicts = [
        grade(c.signal, float(result["value"]), METHOD_NAMES[c.method], c.thresholds.drift, c.thresholds.severe)
        for c, result in zip(columns, results[: len(columns)], strict=True)
    ]
    low_id = list(snapshot.metric_results)[-1]
    current_share = float(snapshot.metric_results[low_id].share.value)
    reference_share = float(snapshot.context.get_reference_metric_result(low_id).share.value)
    rise = max(current_share - reference_share, 0.0)
    thresholds = settings.low_confidence_share
    verdicts.append(
        grade(
            LOW_CONFIDENCE_SHARE,
            rise,
            LOW_CONFIDENCE_METHOD,
            thresholds.drift,
            thresholds.severe,
            detail=f"{current_share:.1%} of predictions at confidence <= {settings.low_confidence:g} "
            f"(baseline {reference_share:.1%})",
        )
    )
    return DriftResult(verdicts, snapshot, current_share, reference_share)
