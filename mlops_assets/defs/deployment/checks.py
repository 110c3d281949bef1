"""The registry and what is deployed never disagree silently: one check per stage says when they do."""

from __future__ import annotations

import dagster as dg

from mlops_assets.defs.deployment.assets import PRODUCTION_ASSET, STAGING_ASSET


def _matches_registry(stage: str) -> dg.AssetCheckResult:
    from mlops_assets.deploy_release import disagreement

    problem = disagreement(stage)
    return dg.AssetCheckResult(
        passed=problem is None,
        severity=dg.AssetCheckSeverity.ERROR,
        description=problem or f"{stage} serves the registry's version for it",
    )


@dg.asset_check(
    asset=STAGING_ASSET,
    name="staging_matches_registry",
    # Blocking: production's automatic rollout waits until staging serves the registry's version.
    blocking=True,
    description="Staging serves the registry's version for it, healthy; otherwise says what to run.",
)
def staging_matches_registry() -> dg.AssetCheckResult:
    """Fail when the version live in staging is not the registry's, or does not answer."""
    return _matches_registry("staging")


@dg.asset_check(
    asset=PRODUCTION_ASSET,
    name="production_matches_registry",
    description="Production serves the registry's production version, healthy; otherwise says what to run.",
)
def production_matches_registry() -> dg.AssetCheckResult:
    """Fail when the version live in production is not the registry's production version, or does not answer."""
    return _matches_registry("production")


DEPLOYMENT_CHECKS = [staging_matches_registry, production_matches_registry]
