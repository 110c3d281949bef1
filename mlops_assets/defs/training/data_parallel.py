"""Data-parallel training from the trained_model asset: torchrun started through Dagster Pipes, whose rank-0 worker
streams every epoch back to the run's log and writes the model package."""

from __future__ import annotations

import tempfile
from pathlib import Path

import dagster as dg

# Not re-exported at the top level by dagster 1.13: what PipesSubprocessClient raises when the process fails.
from dagster._core.errors import DagsterPipesExecutionError

from mlops_assets.lib.atomic import remove_stale_partials
from mlops_assets.lib.errors import TrainingError
from mlops_assets.lib.models.distributed import DataParallelJob, launch_command, read_failure
from mlops_assets.lib.models.training import TrainedModel, load_trained_model


def train_data_parallel(context: dg.AssetExecutionContext, job: DataParallelJob) -> TrainedModel:
    """Train `job` with its processes; its package is at `job.destination` when this returns.

    Raises TrainingError naming the worker that failed (or why none could start); the other workers were stopped and
    nothing is left at the destination.
    """
    with tempfile.TemporaryDirectory(prefix="mlops-torchrun-") as scratch:
        report = Path(scratch) / "failure.json"
        try:
            dg.PipesSubprocessClient().run(
                context=context, command=launch_command(job.processes, report), extras=job.extras()
            )
        except DagsterPipesExecutionError as error:
            # A rank 0 killed while it wrote the package leaves a partial folder that its pid names; it is gone now.
            remove_stale_partials(Path(job.destination).parent)
            problem = read_failure(report) or f"the torchrun launcher failed ({error})"
            raise TrainingError(
                f"Data-parallel training with {job.processes} processes failed: {problem}. No model package was "
                "stored; materialize trained_model again once the cause is fixed."
            ) from error
    return load_trained_model(Path(job.destination))
