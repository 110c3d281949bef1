"""The one place that picks the environment and, from it, the resources."""

from __future__ import annotations

import os

import dagster as dg

from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.dataset import DatasetSource
from mlops_assets.resources.registry import ModelRegistryResource

LOCAL = "local"
KNOWN_ENVIRONMENTS = (LOCAL,)


def get_environment() -> str:
    environment = os.environ.get("MLOPS_ENV", LOCAL)
    if environment not in KNOWN_ENVIRONMENTS:
        raise ValueError(f"MLOPS_ENV={environment!r} is not configured; choose one of {KNOWN_ENVIRONMENTS}.")
    return environment


def resources_for(environment: str) -> dict[str, object]:
    if environment == LOCAL:
        return {
            "dataset": DatasetSource(root=dg.EnvVar("MLOPS_DATASET") if os.environ.get("MLOPS_DATASET") else ""),
            "artifacts": LocalArtifactStore(),
            "registry": ModelRegistryResource(environment=LOCAL),
        }
    raise ValueError(f"No resources are defined for environment {environment!r}.")
