"""The champion/challenger gate: a blocking check that decides whether a registered candidate may be promoted."""

import dagster as dg

from mlops_assets.lib.models.evaluation import EvaluationReport
from mlops_assets.lib.registry.gate import decide_gate
from mlops_assets.packaging import BentoArtifact
from mlops_assets.resources.registry import ModelRegistryResource

PROMOTION_GATE_CHECK = "promotion_gate"


@dg.asset_check(
    asset="bento",
    name=PROMOTION_GATE_CHECK,
    blocking=True,
    additional_ins={"model_evaluation": dg.AssetIn("model_evaluation")},
    description="Above the floor, within tolerance of production on the same test split, no class regressed past "
    "the margin; the first model is judged by the floor alone.",
)
def promotion_gate(
    context: dg.AssetCheckExecutionContext,
    bento: BentoArtifact,
    model_evaluation: EvaluationReport,
    registry: ModelRegistryResource,
) -> dg.AssetCheckResult:
    """Decide promotion to staging against the production model and record the verdict in the registry."""
    policy = registry.policy()
    with registry.open() as models:
        version = models.find_by_model_tag(bento.model_tag)
        if version is None:
            raise ValueError(f"Model {bento.model_tag} is not in the registry; rematerialize the bento asset.")
        # Judged on its numbers even if disabled or once rolled back: whether it is then promoted is
        # model_promotion's decision (never automatically, for such a version), not a failed run.
        decision = decide_gate(model_evaluation.metrics, model_evaluation.champion, policy)
        models.record_gate(version.number, decision, context.run.run_id)
    return dg.AssetCheckResult(
        passed=decision.passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"version {version.number} {'passed' if decision.passed else 'stays ' + version.status}: "
        f"{decision.reason}",
        metadata={
            "version": version.number,
            "reason": decision.reason,
            # The policy's constant thresholds as text: they are settings, not metrics to plot over time.
            "policy": f"{policy.primary_metric} >= {policy.floor} (floor); at most {policy.tolerance} below "
            f"production; no class's F1 more than {policy.per_class_margin} below production's",
            "details": dg.MetadataValue.json(decision.details),
        },
    )
