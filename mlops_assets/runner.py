"""Run the training pipeline job through Dagster on the project's instance and summarize the outcome."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_assets import settings

# One process (no per-step re-import of torch) and INFO logs: the CLI prints a summary, not Dagster's debug log.
CLI_RUN_CONFIG = {
    "execution": {"config": {"in_process": {}}},
    "loggers": {"console": {"config": {"log_level": "INFO"}}},
}


def pipeline_job():
    """Reconstruction target for Dagster: the resolved training pipeline job."""
    from mlops_assets.definitions import build_definitions
    from mlops_assets.defs.jobs import PIPELINE_JOB_NAME

    return build_definitions().resolve_job_def(PIPELINE_JOB_NAME)


@dataclass
class RunSummary:
    run_id: str
    success: bool
    materialized: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def value(self, asset: str, key: str) -> Any:
        return self.materialized.get(asset, {}).get(key)


def _metadata_values(metadata: dict) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def run_pipeline(dataset: Path | None, run_config: dict | None = None) -> RunSummary:
    """Materialize every asset through Dagster (recorded in MLOPS_HOME's instance, visible in the UI)."""
    settings.export_environment()
    if dataset is not None:
        if not dataset.is_dir():
            raise FileNotFoundError(f"Dataset folder {dataset} does not exist.")
        os.environ["MLOPS_DATASET"] = str(dataset.resolve())
    import dagster as dg

    # Output(data_version=...) is beta in Dagster; used on purpose, so keep the user's console clean.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    with dg.DagsterInstance.get() as instance:
        result = dg.execute_job(
            dg.build_reconstructable_job("mlops_assets.runner", "pipeline_job"),
            instance=instance,
            run_config={**CLI_RUN_CONFIG, **(run_config or {})},
            tags={"launched_by": "mlops run"},
            raise_on_error=False,
        )
        summary = RunSummary(run_id=result.run_id, success=result.success)
        for event in result.all_events:
            if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                materialization = event.event_specific_data.materialization
                summary.materialized[materialization.asset_key.to_user_string()] = _metadata_values(
                    materialization.metadata
                )
            elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
                error = event.event_specific_data.error
                cause = error.cause or error
                if "DagsterAssetCheckFailedError" in (cause.cls_name or ""):
                    continue  # the failed check's own evaluation (below) already says why
                summary.failures.append(f"step {event.step_key} failed: {cause.message.strip()}")
            elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
                evaluation = event.event_specific_data
                if not evaluation.passed:
                    summary.failures.append(
                        f"check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} failed: "
                        f"{evaluation.description or ''}"
                    )
        if not result.success and not summary.failures:
            summary.failures.append(f"run {result.run_id} did not succeed; see it in the Dagster UI.")
    return summary


def format_summary(summary: RunSummary) -> str:
    lines = [f"Dagster run {summary.run_id}: {'SUCCESS' if summary.success else 'FAILED'}"]
    if "raw_images" in summary.materialized:
        lines.append(
            f"  dataset:       {summary.value('raw_images', 'num_images')} images, "
            f"{summary.value('raw_images', 'num_classes')} classes, "
            f"data version {str(summary.value('raw_images', 'data_version'))[:16]}"
        )
    if "model_evaluation" in summary.materialized:
        lines.append(
            f"  test metrics:  accuracy {summary.value('model_evaluation', 'accuracy'):.4f}, "
            f"macro F1 {summary.value('model_evaluation', 'macro_f1'):.4f} "
            f"on {summary.value('model_evaluation', 'num_test_images')} test images"
        )
    if summary.value("model_evaluation", "champion"):
        lines.append(f"  champion:      {summary.value('model_evaluation', 'champion')}")
        if summary.value("model_evaluation", "accuracy_difference") is not None:
            lines.append(
                f"                 accuracy {summary.value('model_evaluation', 'champion_accuracy'):.4f} on the same "
                f"test split; candidate - champion {summary.value('model_evaluation', 'accuracy_difference'):+.4f}"
            )
    if "bento" in summary.materialized:
        lines.append(f"  model version: {summary.value('bento', 'model_tag')}")
        lines.append(f"  bento:         {summary.value('bento', 'bento_tag')}")
        lines.append(f"  registry:      {summary.value('bento', 'registry_outcome')}")
    if "model_promotion" in summary.materialized:
        lines.append(f"  promotion:     {summary.value('model_promotion', 'outcome')}")
    lines += [f"  {failure}" for failure in summary.failures]
    return "\n".join(lines)
