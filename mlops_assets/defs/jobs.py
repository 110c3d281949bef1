"""Jobs over the whole asset chain."""

from __future__ import annotations

import dagster as dg

from mlops_assets.defs.training.placement import training_run_tags

PIPELINE_JOB_NAME = "training_pipeline_job"

# What `mlops run` and `mlops rebuild` build. prediction_monitoring grades the service's traffic per day (its own
# partitioned job), not what a run builds. Deployments start servers or roll Cloud Run services: a person (or
# production's rollout) starts them.
PIPELINE_SELECTION = dg.AssetSelection.all() - dg.AssetSelection.assets(
    "prediction_monitoring", "deployment_staging", "deployment_production"
)

training_pipeline_job = dg.define_asset_job(
    PIPELINE_JOB_NAME,
    selection=PIPELINE_SELECTION,
    description="Materialize the whole chain: raw_images -> validated_images -> trained_model -> "
    "model_evaluation -> bento -> model_promotion (and the model's monitoring_baseline), with the data-quality "
    "checks gating training and the promotion gate deciding promotion.",
    # On Kubernetes (K8sRunLauncher), the run's pod goes to the GPU node pool: it trains.
    tags=training_run_tags(),
)
