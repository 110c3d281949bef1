"""Live accuracy: logged predictions joined with the ground-truth labels given for them (feedback), per model."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass

import pandas as pd

from mlops_assets.lib.monitoring.logs import DayLog


@dataclass(frozen=True)
class LiveAccuracy:
    """One model version's predictions that got a true label: how many, how many were right, the share."""

    model_version: str
    labelled: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.labelled if self.labelled else 0.0

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "accuracy": round(self.accuracy, 6)}

    def describe(self) -> str:
        return (
            f"{self.model_version}: live accuracy {self.accuracy:.4f} ({self.correct} of {self.labelled} labelled "
            "prediction(s) right)"
        )


def live_accuracy(records: pd.DataFrame, feedback: dict[tuple[str, int], str]) -> list[LiveAccuracy]:
    """Per model version (most labelled first), over `records` (columns model_version, request_id, index, label)
    whose (request_id, index) has feedback; versions without a labelled prediction are left out."""
    if records.empty or not feedback:
        return []
    truth = [feedback.get((str(r), int(i))) for r, i in zip(records["request_id"], records["index"], strict=True)]
    joined = records.assign(truth=truth)
    joined = joined[joined["truth"].notna()]
    found = [
        LiveAccuracy(str(version), len(group), int((group["label"].astype(str) == group["truth"]).sum()))
        for version, group in joined.groupby("model_version", sort=False)
    ]
    return sorted(found, key=lambda found: (-found.labelled, found.model_version))


def unmatched_feedback(log: DayLog, given: set[tuple[str, int]]) -> int:
    """How many of the labels `given` on the log's day name no prediction logged that day (the service logs a
    sample of requests, so labels for unlogged ones cannot count towards accuracy)."""
    if log.records.empty:
        return len(given)
    logged = set(zip(log.records["request_id"], log.records["index"], strict=True))
    return len(given - logged)


def unmatched_note(count: int, day: dt.date) -> str:
    return (
        f"{count} label(s) given on {day} match no logged prediction (only a sample of requests is logged: "
        "prediction_log_sample_rate)"
    )
