"""The registry's state as Dagster metadata: which version holds each status in the environment."""

from mlops_assets.defs.metadata import markdown_table
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets.lib.registry.schema import PRODUCTION, STAGING


def registry_state_metadata(models: ModelRegistry) -> dict[str, object]:
    versions = models.versions()
    holders = {view.status: view for view in versions if view.status in (STAGING, PRODUCTION)}
    return {
        "environment": models.environment,
        "production_version": holders[PRODUCTION].number if PRODUCTION in holders else "none",
        "production_model_tag": holders[PRODUCTION].model_tag if PRODUCTION in holders else "none",
        "staging_version": holders[STAGING].number if STAGING in holders else "none",
        "registry": markdown_table(
            ["version", "status", "accuracy", "data version", "git commit", "model tag"],
            [
                [v.number, v.status, v.metrics["accuracy"], v.data_version[:12], v.git_commit[:10], v.model_tag]
                for v in reversed(versions)
            ],
        ),
    }
