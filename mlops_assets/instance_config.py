"""The Dagster instance config (`dagster.yaml`) of an environment, generated from its `deployments/<env>.yaml`.

local: SQLite run, event-log and schedule storage under DAGSTER_HOME (Dagster's default). staging and production
(`dagster: database: postgresql`): dagster-postgres storage, its URL read by Dagster from the environment variable
`dagster.url_env` names when the instance starts, so no password is ever written to the file. Each instance setting
has its own section function below; `instance_config` puts them together.
"""

from __future__ import annotations

import os
from typing import Any

import yaml

from mlops_assets.lib.environment_settings import POSTGRESQL, EnvironmentSettings
from mlops_assets.lib.settings_validation import ConfigError

# Seconds between uploads of a running step's output to GCS.
COMPUTE_LOG_UPLOAD_INTERVAL_S = 30

HEADER = (
    "# Written by mlops from deployments/{environment}.yaml at every start; edit that file instead (changes made here\n"
    "# are overwritten).\n"
)


def telemetry_section(_environment: EnvironmentSettings) -> dict[str, Any]:
    """No usage reporting from a pipeline."""
    return {"telemetry": {"enabled": False}}


def storage_section(environment: EnvironmentSettings) -> dict[str, Any]:
    """Runs, event logs and schedules: SQLite under DAGSTER_HOME (no section: Dagster's default) or PostgreSQL."""
    if environment.dagster.database != POSTGRESQL:
        return {}
    return {"storage": {"postgres": {"postgres_url": {"env": environment.dagster.url_env}}}}


def compute_logs_section(environment: EnvironmentSettings) -> dict[str, Any]:
    """Steps' stdout/stderr: files under DAGSTER_HOME (no section: Dagster's default), or, where the environment
    keeps its storage on GCS, dagster-gcp's GCS compute log manager below `<storage URL>/compute-logs`, staged in
    MLOPS_HOME/cache (so nothing but caches stays on the machine). Raises ConfigError naming `storage.url_env` when
    it is unset or not a gs:// URL."""
    from mlops_assets import settings
    from mlops_assets.lib.environment_settings import GCS
    from mlops_assets.lib.storage.gcs import parse_gcs_url

    storage = environment.storage
    if storage.backend != GCS:
        return {}
    url = os.environ.get(storage.url_env)
    source = f"deployments/{environment.environment}.yaml storage"
    if not url:
        raise ConfigError(
            source, [f"{storage.url_env}: not set; set it to gs://bucket/prefix (storage.backend = 'gcs')"]
        )
    try:
        location = parse_gcs_url(url).child("compute-logs")
    except ValueError as error:
        raise ConfigError(source, [f"{storage.url_env} = {url!r}: {error}"]) from None
    config = {
        "bucket": location.bucket,
        "prefix": location.prefix,
        "local_dir": str(settings.mlops_home() / "cache" / "compute-logs"),
        # Long steps (training) show their output in the UI while they run, not only at the end.
        "upload_interval": COMPUTE_LOG_UPLOAD_INTERVAL_S,
    }
    return {
        "compute_logs": {
            "module": "dagster_gcp.gcs.compute_log_manager",
            "class": "GCSComputeLogManager",
            "config": config,
        }
    }


# In order; a new instance setting (compute logs, run launcher, ...) is one more section function here.
SECTIONS = (telemetry_section, storage_section, compute_logs_section)


def instance_config(environment: EnvironmentSettings) -> dict[str, Any]:
    """The instance config as a mapping (the keys of Dagster's `dagster.yaml`)."""
    config: dict[str, Any] = {}
    for section in SECTIONS:
        config.update(section(environment))
    return config


def instance_yaml(environment: EnvironmentSettings) -> str:
    """The `dagster.yaml` text for the environment, with a header saying where it comes from."""
    body = yaml.safe_dump(instance_config(environment), sort_keys=False, default_flow_style=False)
    return HEADER.format(environment=environment.environment) + body
