"""The champion/challenger gate: may a candidate replace the production model? Pure logic, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mlops_assets.lib.registry.policy import PromotionPolicy

if TYPE_CHECKING:  # evaluation.py imports numpy, pandas and PIL: not for code that only reads the registry
    from mlops_assets.lib.models.evaluation import ChampionEvaluation


@dataclass(frozen=True)
class GateDecision:
    """The verdict, a sentence saying why, and the numbers behind it."""

    passed: bool
    reason: str
    details: dict = field(default_factory=dict)


def _per_class_f1(metrics: dict) -> dict[str, float]:
    return {row["label"]: row["f1"] for row in metrics["per_class"]}


def class_regressions(candidate: dict, champion: dict) -> list[dict]:
    """Per class: the candidate's and the champion's F1 and the change (negative = worse)."""
    ours, theirs = _per_class_f1(candidate), _per_class_f1(champion)
    return [
        {
            "label": label,
            "candidate_f1": ours[label],
            "champion_f1": theirs[label],
            "change": ours[label] - theirs[label],
        }
        for label in ours
        if label in theirs
    ]


def decide_gate(candidate: dict, champion: ChampionEvaluation | None, policy: PromotionPolicy) -> GateDecision:
    """Floor first; then, if there is a champion, primary metric within tolerance and no class regressed past margin."""
    metric = policy.primary_metric
    value = candidate[metric]
    details: dict = {"primary_metric": metric, "candidate": value, "floor": policy.floor}
    if value < policy.floor:
        return GateDecision(False, f"{metric} {value:.4f} is below the floor {policy.floor:.4f}", details)
    if champion is None:
        reason = f"first model: no production model to compare with, decided by the floor alone ({value:.4f} >= "
        return GateDecision(True, reason + f"{policy.floor:.4f})", {**details, "champion": None})
    details.update(champion_version=champion.version, champion_note=champion.note)
    if not champion.comparable:
        reason = (
            f"{champion.note}; a label-set change is never promoted automatically: promote this version "
            "deliberately (force, with a reason) if it should replace production"
        )
        return GateDecision(False, reason, details)
    best = champion.metrics[metric]
    difference = value - best
    details.update(champion=best, difference=difference, tolerance=policy.tolerance)
    versus = f"{metric} {value:.4f} vs production version {champion.version} {best:.4f} ({difference:+.4f})"
    if difference < -policy.tolerance:
        return GateDecision(False, f"{versus}: worse by more than the tolerance {policy.tolerance:.4f}", details)
    regressions = class_regressions(candidate, champion.metrics)
    details["per_class"] = regressions
    worst = [row for row in regressions if row["change"] < -policy.per_class_margin]
    if worst:
        listed = ", ".join(
            f"{row['label']!r} F1 {row['champion_f1']:.4f} -> {row['candidate_f1']:.4f}" for row in worst
        )
        return GateDecision(
            False, f"{versus}, but classes regressed by more than {policy.per_class_margin}: {listed}", details
        )
    verdict = "better" if difference > 0 else "equal within the tolerance" if difference < 0 else "equal"
    return GateDecision(
        True, f"{versus}: {verdict}; no class regressed by more than {policy.per_class_margin}", details
    )
