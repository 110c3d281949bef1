"""The Dagster code location: loads every stage's definitions and binds the environment's resources."""

from __future__ import annotations

import dagster as dg

from mlops_assets.defs.evaluation.assets import model_evaluation
from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.jobs import training_pipeline_job
from mlops_assets.defs.packaging.assets import bento
from mlops_assets.defs.promotion.assets import model_promotion
from mlops_assets.defs.promotion.checks import promotion_gate
from mlops_assets.defs.promotion.jobs import REGISTRY_JOBS
from mlops_assets.defs.training.assets import trained_model
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.defs.validation.checks import validated_images_quality
from mlops_assets.environments import get_environment, resources_for

ASSETS = [raw_images, validated_images, trained_model, model_evaluation, bento, model_promotion]


def build_definitions(environment: str | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=[validated_images_quality, promotion_gate],
        jobs=[training_pipeline_job, *REGISTRY_JOBS],
        resources=resources_for(environment or get_environment()),
    )


defs = build_definitions()
