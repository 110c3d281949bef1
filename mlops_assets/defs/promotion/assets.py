"""Promotion: a version that passed the gate moves to staging, and on to production where the policy says so."""

import dagster as dg

from mlops_assets.defs.promotion.state import registry_state_metadata
from mlops_assets.lib.registry.registry import VersionView
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
        if version.status in (CANDIDATE, ARCHIVED):
            version = models.promote(version.number, STAGING, actor, "passed the promotion gate")
        if version.status == STAGING and policy.automatic_production:
            reason = f"staging_to_production is automatic in {models.environment}"
            version = models.promote(version.number, PRODUCTION, actor, reason)
        if version.status == PRODUCTION:
            outcome = f"version {version.number} is in production in {models.environment}"
        else:
            outcome = (
                f"version {version.number} is in {version.status} in {models.environment}; promote it to production "
                f"deliberately: mlops models promote {version.number} --to production"
            )
        context.log.info(outcome)
        state = registry_state_metadata(models)
    return dg.Output(
        version,
        data_version=dg.DataVersion(f"{version.number}-{version.status}"),
        metadata={"version": version.number, "status": version.status, "outcome": outcome, **state},
    )
