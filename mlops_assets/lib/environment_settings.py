"""An environment file (`deployments/<env>.yaml`) as a whole: every section's names, types and ranges checked."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlops_assets.lib.deploy.stage_settings import DeploymentsSettings
from mlops_assets.lib.deploy.validation import check_deployment_stages
from mlops_assets.lib.monitoring.settings import MonitoringSettings
from mlops_assets.lib.registry.policy import PromotionSettings
from mlops_assets.lib.serving.serving_arguments import ServingSettings
from mlops_assets.lib.settings_validation import ConfigError, read_yaml, validate


class ServerSettings(BaseModel):
    """Where `mlops deploy` serves a bento: `server:`."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    # Seconds to wait for /readyz before giving up and stopping the server.
    ready_timeout_s: float = Field(120.0, gt=0)


# An environment variable's name (URLs and secrets are read from the environment, never written in the file).
ENV_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_VAR_NOTE = {"allowed": "an environment variable's name (letters, digits and _, not starting with a digit)"}
SQLITE = "sqlite"
POSTGRESQL = "postgresql"


class RegistrySettings(BaseModel):
    """Where the model registry lives: `registry:`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # sqlite: MLOPS_HOME/registry.db, or the URL in `url_env` when that variable is set; postgresql: the URL in
    # `url_env` (postgresql+psycopg2://...), which must then be set.
    database: Literal["sqlite", "postgresql"] = SQLITE
    # The environment variable holding the registry's SQLAlchemy URL.
    url_env: str = Field("MLOPS_REGISTRY_URL", pattern=ENV_VAR_NAME, json_schema_extra=_ENV_VAR_NOTE)


class DagsterSettings(BaseModel):
    """Where the Dagster instance keeps runs, event logs and schedules: `dagster:`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # sqlite: files under MLOPS_HOME/dagster; postgresql: dagster-postgres storage at the URL in `url_env`.
    database: Literal["sqlite", "postgresql"] = SQLITE
    # The environment variable holding the storage's URL (postgresql+psycopg2://...; read when the instance starts).
    url_env: str = Field("MLOPS_DAGSTER_POSTGRES_URL", pattern=ENV_VAR_NAME, json_schema_extra=_ENV_VAR_NOTE)


LOCAL = "local"
GCS = "gcs"
FOLDER = "folder"


class StorageSettings(BaseModel):
    """Where datasets, artifacts, step outputs, bentos, compute logs and prediction logs live: `storage:`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # local: folders under MLOPS_HOME; gcs: below the gs://bucket/prefix in `url_env` (artifacts/, dagster/ for step
    # outputs, models/, bentos/, compute-logs/, predictions/), with local copies only in MLOPS_HOME/cache.
    backend: Literal["local", "gcs"] = LOCAL
    # The environment variable holding that gs://bucket/prefix (read when a run or a server starts).
    url_env: str = Field("MLOPS_STORAGE_URL", pattern=ENV_VAR_NAME, json_schema_extra=_ENV_VAR_NOTE)
    # The environment variable holding the Google Cloud project of the GCS client; unset: the credentials' own.
    project_env: str = Field("MLOPS_GCP_PROJECT", pattern=ENV_VAR_NAME, json_schema_extra=_ENV_VAR_NOTE)
    # Where datasets are read: folder (a folder on this machine) or gcs (gs://bucket/prefix/<label>/<file>). The
    # dataset itself is chosen per run: `mlops run --dataset`, or MLOPS_DATASET (unset with `folder`: the bundled
    # sample digits).
    dataset_source: Literal["folder", "gcs"] = FOLDER


class EnvironmentSettings(BaseModel):
    """Everything an environment file holds; an unknown section or setting is an error, never ignored."""

    model_config = ConfigDict(extra="forbid", strict=True)

    environment: str = Field(min_length=1)
    server: ServerSettings
    serving: ServingSettings = ServingSettings()
    promotion: PromotionSettings = PromotionSettings()
    registry: RegistrySettings = RegistrySettings()
    dagster: DagsterSettings = DagsterSettings()
    storage: StorageSettings = StorageSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    deployments: DeploymentsSettings = DeploymentsSettings()


# Sections whose settings all have defaults: an empty one (`serving:` with nothing under it) means its defaults.
SECTIONS_WITH_DEFAULTS = ("serving", "promotion", "registry", "dagster", "storage", "monitoring", "deployments")


def load_environment_settings(path: Path, environment: str) -> EnvironmentSettings:
    """The checked settings of `environment` from `path`; raises ConfigError naming the file and each bad setting
    (its value and what is allowed)."""
    if not path.is_file():
        raise ConfigError(str(path), [f"missing; it holds the settings of the {environment!r} environment"])
    content = read_yaml(path)
    if isinstance(content, dict):
        content = {
            key: {} if value is None and key in SECTIONS_WITH_DEFAULTS else value for key, value in content.items()
        }
    settings = validate(EnvironmentSettings, content, str(path))
    # Cloud Run stages: what Cloud Run would refuse (CPU/memory pairs, GPU sizes and regions, quota) fails here; local
    # stages: a port another server of the project binds (the other stage, server.port, the Dagster UI).
    check_deployment_stages(settings.deployments, str(path), settings.server.port)
    if settings.environment != environment:
        raise ConfigError(
            str(path), [f"environment = {settings.environment!r}: expected {environment!r} (the file's environment)"]
        )
    return settings
