"""Jobs over the whole asset chain."""

from __future__ import annotations

import dagster as dg

PIPELINE_JOB_NAME = "training_pipeline_job"

training_pipeline_job = dg.define_asset_job(
    PIPELINE_JOB_NAME,
    selection=dg.AssetSelection.all(),
    description="Materialize the whole chain: raw_images -> validated_images -> trained_model -> "
    "model_evaluation -> bento -> model_promotion, with the data-quality checks gating training and "
    "the promotion gate deciding promotion.",
)
