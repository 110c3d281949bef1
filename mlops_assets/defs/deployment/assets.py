"""The deployment assets: one per stage, each materialization making what serves there match the registry.

Triggering: `deployment_staging` is materialized by a person (the UI, or `mlops deploy staging` on the command line,
which runs the same deployment without a Dagster run), never by `mlops run` or an automation condition, because a
deployment starts servers or rolls a Cloud Run service. `deployment_production` follows it by an automation condition
where the stage's `rollout` is automatic (after staging's materialization and its blocking check passed), and is
otherwise materialized by a person as well.
"""

import dagster as dg

from mlops_assets import settings
from mlops_assets.defs.groups import DEPLOYMENT, presentation
from mlops_assets.lib.deploy.release import DeploymentRecord

STAGING_ASSET = "deployment_staging"
PRODUCTION_ASSET = "deployment_production"


def record_metadata(record: DeploymentRecord, redeployed: bool) -> dict[str, dg.MetadataValue]:
    """What is live in the stage, as the UI shows it: version, bento, URLs, traffic split and the canary."""
    canary = record.canary
    return {
        "model_version": dg.MetadataValue.int(record.model_version),
        "bento_tag": dg.MetadataValue.text(record.bento_tag),
        "revision": dg.MetadataValue.text(record.revision),
        "url": dg.MetadataValue.url(record.url),
        "target": dg.MetadataValue.text(record.target),
        "traffic": dg.MetadataValue.text(", ".join(f"{s.revision} {s.percent}%" for s in record.traffic)),
        "revision_urls": dg.MetadataValue.json(record.revision_urls),
        "canary": dg.MetadataValue.text(
            f"{canary.matched}/{canary.sent} matched at {canary.url}" if canary is not None else "not run"
        ),
        "canary_passed": dg.MetadataValue.bool(canary is not None and canary.passed),
        "previous_revision": dg.MetadataValue.text(record.previous_revision or "none"),
        # False: the registry's version was already live and healthy, so nothing was restarted.
        "redeployed": dg.MetadataValue.bool(redeployed),
        "deployed_at": dg.MetadataValue.text(record.deployed_at),
    }


def deploy_to(stage: str, context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Make `stage` serve the registry's version for it (left as it is when already live and healthy)."""
    from mlops_assets.deploy_release import already_live, deploy_stage

    live = already_live(stage)
    if live is not None:
        context.log.info(f"Version {live.model_version} is already live in {stage} at {live.url}; nothing restarted.")
        return dg.MaterializeResult(metadata=record_metadata(live, redeployed=False))
    from mlops_assets.lib.deploy.progress import reporting_to

    with reporting_to(context.log.info):  # each step (start, ready, canary, switch, drain) in the run's log
        record = deploy_stage(stage)
    context.log.info(f"Version {record.model_version} is live in {stage} at {record.url}.")
    return dg.MaterializeResult(metadata=record_metadata(record, redeployed=True))


@dg.asset(
    name=STAGING_ASSET,
    **presentation(DEPLOYMENT),
    # BentoML has no icon in the UI; a deployment serves a bento as a container (Docker icon).
    kinds={"bentoml", "docker"},
    deps=["model_promotion"],
    description="The registry's staging version (production's where promotion is automatic) served in staging.",
)
def deployment_staging(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Serve the registry's staging version in the staging stage, past its canary."""
    return deploy_to("staging", context)


def build_deployment_production(rollout: str) -> dg.AssetsDefinition:
    """deployment_production with the automation condition of the stage's `rollout` (automatic: after staging)."""
    automatic = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()

    @dg.asset(
        name=PRODUCTION_ASSET,
        **presentation(DEPLOYMENT),
        kinds={"bentoml", "docker"},
        deps=[STAGING_ASSET],
        automation_condition=automatic if rollout == "automatic" else None,
        description="The registry's production version served in production, once its staging canary passed.",
    )
    def deployment_production(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """Serve the registry's production version in the production stage once staging's canary passed on it."""
        return deploy_to("production", context)

    return deployment_production


def deployment_assets(environment: str) -> list[dg.AssetsDefinition]:
    """Both stages' assets, production's automation following the environment file's `rollout`."""
    rollout = settings.environment_settings(environment).deployments.production.rollout
    return [deployment_staging, build_deployment_production(rollout)]
