"""The job that materializes one day of prediction monitoring for one deployment stage."""

from __future__ import annotations

import dagster as dg

from mlops_assets.defs.monitoring.assets import MONITORING_ASSET, MONITORING_PARTITIONS

MONITORING_JOB_NAME = "prediction_monitoring_job"

prediction_monitoring_job = dg.define_asset_job(
    MONITORING_JOB_NAME,
    selection=dg.AssetSelection.assets(MONITORING_ASSET),
    partitions_def=MONITORING_PARTITIONS,
    description="Grade one day's logged predictions of one deployment stage against the baseline of the version "
    "live there (prediction_monitoring and its drift checks).",
)
