"""Promotion: a version that passed the gate moves to staging, and on to production where the policy says so."""

import dagster as dg

from mlops_assets.defs.groups import DEPLOYMENT, presentation
from mlops_assets.defs.promotion.state import registry_state_metadata
from mlops_assets.lib.registry.registry import ModelRegistry, PromotionHold, VersionView
from mlops_assets.lib.registry.schema import PRODUCTION
from mlops_assets.packaging import BentoArtifact
from mlops_assets.resources.registry import ModelRegistryResource


@dg.asset(
    **presentation(DEPLOYMENT),
    # The model registry: SQLite locally, PostgreSQL in staging and production.
    kinds={"sql"},
    automation_condition=dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed(),
)
def model_promotion(
    context: dg.AssetExecutionContext, bento: BentoArtifact, registry: ModelRegistryResource
) -> dg.Output[VersionView]:
    """The built version moved to staging (it passed the gate) and, if the environment is automatic, to production."""
    policy = registry.policy()
    actor = f"dagster run {context.run.run_id}"
    with registry.open() as models:
        version = models.find_by_model_tag(bento.model_tag)
        if version is None:
            raise ValueError(f"Model {bento.model_tag} is not in the registry; rematerialize the bento asset.")
        # One transaction that also checks production is still the model the gate compared this version with; a
        # run that promoted the same model meanwhile leaves nothing to do.
        promoted = models.promote_after_gate(
            version.number,
            _gate_champion(models, version.number, context.run.run_id),
            policy.automatic_production,
            actor,
        )
        version, hold = promoted.version, promoted.hold
        outcome = _outcome(models, version, hold)
        context.log.info(outcome)
        state = registry_state_metadata(models)
    return dg.Output(
        version,
        data_version=dg.DataVersion(f"{version.number}-{version.status}"),
        metadata={
            "version": version.number,
            "status": version.status,
            "outcome": outcome,
            # Not promoting a rolled-back or disabled version is a decision, not a failure: the run succeeds.
            "held_back": str(hold) if hold else "no",
            **state,
        },
    )


def _gate_champion(models: ModelRegistry, number: int, run_id: str) -> int | None:
    """The production version the promotion gate compared this version with (None: there was none).

    This run's verdict when it has one (another run may have judged the same version against another champion);
    otherwise the latest, which is the one the registry requires to have passed (none: the registry refuses).
    """
    decisions = models.gate_decisions(number)
    ours = [decision for decision in decisions if decision.dagster_run_id == run_id] or decisions
    return ours[-1].details.get("champion_version") if ours else None


def _outcome(models: ModelRegistry, version: VersionView, hold: PromotionHold | None) -> str:
    """One sentence for the log, the metadata and `mlops run`'s summary."""
    if hold is not None:
        return (
            f"{hold}; it stays {version.status} in {models.environment} because the pipeline never promotes a "
            f"rolled-back or disabled version again: {hold.remedy}"
        )
    if version.status == PRODUCTION:
        return f"version {version.number} is in production in {models.environment}"
    return (
        f"version {version.number} is in {version.status} in {models.environment}; promote it to production "
        f"deliberately: mlops models promote {version.number} --to production"
    )
