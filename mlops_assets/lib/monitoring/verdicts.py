"""What monitoring concludes per signal: a verdict with the statistic and thresholds behind it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

NO_DRIFT = "no drift"
DRIFT = "drift"
SEVERE_DRIFT = "severe drift"
# Verdicts that say nothing about drift: monitoring could not compare (never reported as "no drift").
NOT_ENOUGH_DATA = "not enough data"
NO_BASELINE = "no baseline"
NO_MODEL_VERSION = "no model version"
# A signal this model or configuration does not have (a plug-in without an embedding): neither drift nor a gap.
NOT_MONITORED = "not monitored"
COMPARED = (NO_DRIFT, DRIFT, SEVERE_DRIFT)
UNDETERMINED = (NOT_ENOUGH_DATA, NO_BASELINE, NO_MODEL_VERSION)


@dataclass(frozen=True)
class SignalVerdict:
    """One signal's outcome. `statistic` is None when nothing was compared (then `detail` says why); a statistic at
    or above `drift_threshold` is drift, at or above `severe_threshold` severe drift."""

    signal: str
    verdict: str
    statistic: float | None = None
    method: str = ""
    drift_threshold: float | None = None
    severe_threshold: float | None = None
    detail: str = ""

    @property
    def determined(self) -> bool:
        return self.verdict in COMPARED

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SignalVerdict:
        return cls(**values)

    def describe(self) -> str:
        """One line: `signal: verdict (method statistic vs drift D / severe S)` or `signal: verdict: detail`."""
        if self.statistic is None:
            return f"{self.signal}: {self.verdict}: {self.detail}"
        return (
            f"{self.signal}: {self.verdict} ({self.method} {self.statistic:.4g}; drift at {self.drift_threshold:g}, "
            f"severe at {self.severe_threshold:g})"
        )


def grade(signal: str, statistic: float, method: str, drift: float, severe: float, detail: str = "") -> SignalVerdict:
    """The verdict of a statistic where larger means further from the baseline."""
    verdict = SEVERE_DRIFT if statistic >= severe else DRIFT if statistic >= drift else NO_DRIFT
    return SignalVerdict(signal, verdict, float(statistic), method, drift, severe, detail)


def undetermined(signals: list[str], verdict: str, detail: str) -> list[SignalVerdict]:
    """The same non-verdict (not enough data, no baseline, ...) for every signal, with the reason."""
    return [SignalVerdict(signal, verdict, detail=detail) for signal in signals]


def worst(verdicts: list[SignalVerdict]) -> str:
    """The overall verdict: severe drift over drift over an undetermined signal over no drift (a signal that is not
    monitored counts as none). Raises ValueError for a verdict outside this module's set, which would otherwise be
    read as "no drift"."""
    found = {verdict.verdict for verdict in verdicts}
    unknown = found - {*COMPARED, *UNDETERMINED, NOT_MONITORED}
    if unknown:
        raise ValueError(f"Unknown monitoring verdict(s) {sorted(unknown)}: add them to lib/monitoring/verdicts.py.")
    found.discard(NOT_MONITORED)
    for candidate in (SEVERE_DRIFT, DRIFT, *UNDETERMINED):
        if candidate in found:
            return candidate
    return NO_DRIFT if found else NOT_ENOUGH_DATA
