"""The one place that picks the environment and, from its file (deployments/<environment>.yaml), the resources.

Each external system has one interface and a local and a cloud implementation; the file's `storage:` and
`registry:` sections choose between them, and asset code only ever sees the interface. URLs and secrets are read from
environment variables (`dg.EnvVar`, resolved when a run starts), whose names the file gives.
"""

from __future__ import annotations

import os

import dagster as dg
from dagster_gcp import GCSResource

from mlops_assets import settings
from mlops_assets.lib.environment_settings import GCS, POSTGRESQL, EnvironmentSettings
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.bento_store import GcsBentoStore, LocalBentoStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.fixed import fixed_io_manager, fixed_resource, instance_storage_io_manager
from mlops_assets.resources.gcs_artifacts import GcsArtifactStore
from mlops_assets.resources.gcs_dataset import GcsDatasetSource
from mlops_assets.resources.gcs_io_manager import GcsRunOutputs
from mlops_assets.resources.registry import ModelRegistryResource

LOCAL = "local"
STAGING = "staging"
PRODUCTION = "production"
KNOWN_ENVIRONMENTS = (LOCAL, STAGING, PRODUCTION)
ENVIRONMENT_VARIABLE = "MLOPS_ENV"
# The dataset a run reads (a folder, or gs://bucket/prefix where `storage.dataset_source` is gcs); `mlops run
# --dataset` sets it, and run config may override it (resources.dataset.config.root).
DATASET_VARIABLE = "MLOPS_DATASET"


def get_environment() -> str:
    """MLOPS_ENV (default local); a ConfigError names the variable when it is not a known environment."""
    environment = os.environ.get(ENVIRONMENT_VARIABLE) or LOCAL
    if environment not in KNOWN_ENVIRONMENTS:
        choices = ", ".join(repr(name) for name in KNOWN_ENVIRONMENTS)
        raise ConfigError(
            "environment", [f"{ENVIRONMENT_VARIABLE} = {environment!r}: expected one of {choices} (deployments/)"]
        )
    return environment


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
        GcsDatasetSource(root=dg.EnvVar(DATASET_VARIABLE), gcs=gcs)
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
        }
    else:
        resources |= {"artifacts": LocalArtifactStore(), "bento_store": LocalBentoStore()}
    return resources


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
        "io_manager": (
            fixed_io_manager(io_manager, f"Step outputs of {environment} on GCS, kept per run ({where}: storage).")
            if io_manager is not None
            else instance_storage_io_manager
        ),
    }
