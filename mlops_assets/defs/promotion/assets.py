"""Promotion: a version that passed the gate moves to staging, and on to production where the policy says so."""

import dagster as dg

from mlops_assets.defs.promotion.state import registry_state_metadata
from mlops_assets.lib.registry.registry import ModelRegistry, PromotionHold, VersionView
from mlops_assets.lib.registry.schema import ARCHIVED, CANDIDATE, PRODUCTION, STAGING
from mlops_assets.packaging import BentoArtifact
from mlops_assets.resources.registry import ModelRegistryResource


@dg.asset(
    group_name="promotion",
    kinds={"sqlite"},
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
        hold = None if version.status == PRODUCTION else models.promotion_hold(version.number)
        if hold is None:
            if version.status in (CANDIDATE, ARCHIVED):
                version = models.promote(version.number, STAGING, actor, "passed the promotion gate", automatic=True)
            if version.status == STAGING and policy.automatic_production:
                reason = f"staging_to_production is automatic in {models.environment}"
                version = models.promote(version.number, PRODUCTION, actor, reason, automatic=True)
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
