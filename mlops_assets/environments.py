"""The one place that picks the environment and, from its file (deployments/<environment>.yaml), the resources.

Each external system has one interface and a local and a cloud implementation; the file's `storage:` and
`registry:` sections choose between them, and asset code only ever sees the interface. URLs and secrets are read from
environment variables (`dg.EnvVar`, resolved when a run starts), whose names the file gives.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster_gcp import GCSResource

from mlops_assets import settings
from mlops_assets.lib.environment_settings import GCS, POSTGRESQL, EnvironmentSettings
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.bento_store import GcsBentoStore, LocalBentoStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.dataset_store import GcsDatasetStore, LocalDatasetStore
from mlops_assets.resources.fixed import fixed_io_manager, fixed_resource, instance_storage_io_manager
from mlops_assets.resources.gcs_artifacts import GcsArtifactStore
from mlops_assets.resources.gcs_dataset import GcsDatasetSource
from mlops_assets.resources.gcs_io_manager import GcsRunOutputs
from mlops_assets.resources.prediction_logs import GcsPredictionLogs, LocalPredictionLogs
from mlops_assets.resources.registry import ModelRegistryResource

LOCAL, STAGING, PRODUCTION = settings.KNOWN_ENVIRONMENTS
KNOWN_ENVIRONMENTS = settings.KNOWN_ENVIRONMENTS
ENVIRONMENT_VARIABLE = settings.ENVIRONMENT_VARIABLE
# The operator's dataset (a folder, or gs://bucket/prefix where `storage.dataset_source` is gcs) for runs that choose
# none while the project has no current dataset (dataset_choice.py); run config may set it too
# (resources.dataset.config.root).
DATASET_VARIABLE = "MLOPS_DATASET"


def get_environment() -> str:
    """MLOPS_ENV (default local); a ConfigError names the variable when it is not a known environment."""
    return settings.environment_name()  # the one check, shared with code that cannot import Dagster


def _from_variable(name: str) -> str:
    """`dg.EnvVar(name)` when the variable is set now, else '' (the resource's own default applies)."""
    return dg.EnvVar(name) if os.environ.get(name) else ""


def storage_resources(environment: str) -> dict[str, dg.ConfigurableResource]:
    """The environment's resources as configured, not yet bound: `resources_for` binds them for the code location;
    preflight checks and code outside a run (the deployer) use them as they are."""
    found: EnvironmentSettings = settings.environment_settings(environment)
    storage = found.storage
    gcs = GCSResource(project=_from_variable(storage.project_env) or None)
    url = dg.EnvVar(storage.url_env)
    dataset = (
        GcsDatasetSource(root=_from_variable(DATASET_VARIABLE), gcs=gcs)
        if storage.dataset_source == GCS
        else FolderDatasetSource(root=_from_variable(DATASET_VARIABLE))
    )
    registry_url = dg.EnvVar(found.registry.url_env) if found.registry.database == POSTGRESQL else ""
    resources: dict[str, dg.ConfigurableResource] = {
        "dataset": dataset,
        "registry": ModelRegistryResource(environment=environment, url=registry_url),
    }
    if storage.backend == GCS:
        resources |= {
            "artifacts": GcsArtifactStore(url=url, gcs=gcs),
            "bento_store": GcsBentoStore(url=url, gcs=gcs),
            "io_manager": GcsRunOutputs(url=url, gcs=gcs),
            "prediction_logs": GcsPredictionLogs(url=url, gcs=gcs),
            "dataset_store": GcsDatasetStore(url=url, gcs=gcs),
        }
    else:
        resources |= {
            "artifacts": LocalArtifactStore(),
            "bento_store": LocalBentoStore(),
            "prediction_logs": LocalPredictionLogs(),
            "dataset_store": LocalDatasetStore(),
        }
    return resources


@contextmanager
def opened(name: str, environment: str | None = None) -> Iterator[Any]:
    """The environment's resource `name` set up for code outside a run (the deployer, the CLI): its environment
    variables read now, its nested resources (the GCS client) made, torn down afterwards."""
    resource = storage_resources(environment or get_environment())[name]
    with resource.process_config_and_initialize_cm() as initialized:
        yield initialized


def fetch_bento(bento_tag: str, environment: str | None = None) -> str:
    """`bento_tag`, brought with its model into the local BentoML store from the environment's bento store when
    this machine lacks it (a no-op locally); raises BentoNotFoundError when it is kept nowhere."""
    with opened("bento_store", environment) as store:
        store.ensure_bento(bento_tag)
    return bento_tag


def resources_for(environment: str) -> dict[str, object]:
    """The resources the code location binds. Only the dataset is open to run config (which dataset to read); where
    artifacts, step outputs, bentos and model versions live is the operator's choice, never a launcher's."""
    found = storage_resources(environment)
    where = settings.environment_file(environment).name
    io_manager = found.pop("io_manager", None)
    return {
        "dataset": found["dataset"],
        "artifacts": fixed_resource(found["artifacts"], f"Artifact store of {environment} ({where}: storage)."),
        "bento_store": fixed_resource(found["bento_store"], f"Models and bentos of {environment} ({where}: storage)."),
        "registry": fixed_resource(
            found["registry"], f"Model registry of {environment} ({where}: registry), with its promotion policy."
        ),
        "prediction_logs": fixed_resource(
            found["prediction_logs"], f"Prediction logs of {environment}'s servers ({where}: storage)."
        ),
        "dataset_store": fixed_resource(
            found["dataset_store"], f"Files and manifests of recorded data versions, {environment} ({where}: storage)."
        ),
        "io_manager": (
            fixed_io_manager(io_manager, f"Step outputs of {environment} on GCS, kept per run ({where}: storage).")
            if io_manager is not None
            else instance_storage_io_manager
        ),
    }
