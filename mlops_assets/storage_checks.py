"""Before a run: the environment's dataset source and stores can be used (a URL is set and well formed, its bucket
exists and these credentials may read it, the dataset holds objects), each problem named by the setting to fix."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from mlops_assets import settings
from mlops_assets.dataset_runs import READ_FROM_STORE, storage_check_target
from mlops_assets.environments import DATASET_VARIABLE, get_environment, storage_resources
from mlops_assets.lib.environment_settings import GCS
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets.resources.dataset import ROOT_SETTING

RUN_CONFIG = "run config"


def _dataset_setting(run_config: Any) -> tuple[str, str, str | None]:
    """(source, setting, value) of the dataset a run reads: run config's `resources.dataset.config.root` (itself or
    the variable it names) when it sets one, else MLOPS_DATASET."""
    root = None
    if isinstance(run_config, Mapping):
        resources = run_config.get("resources")
        dataset = resources.get("dataset") if isinstance(resources, Mapping) else None
        config = dataset.get("config") if isinstance(dataset, Mapping) else None
        root = config.get("root") if isinstance(config, Mapping) else None
    if isinstance(root, Mapping) and set(root) == {"env"}:
        return RUN_CONFIG, str(root["env"]), os.environ.get(str(root["env"]))
    if isinstance(root, str):
        return RUN_CONFIG, ROOT_SETTING, root
    return "", DATASET_VARIABLE, os.environ.get(DATASET_VARIABLE)


def check_storage(run_config: Any = None, environment: str | None = None) -> None:
    """Raise ConfigError naming the setting to fix when the dataset or a store of the environment cannot be used.

    What the checks cannot see: permissions on objects other than the bucket's listing (GCS IAM may still refuse a
    write later); the GCS emulator used in tests has no IAM at all.
    """
    environment = environment or get_environment()
    where = f"{environment} storage (deployments/{environment}.yaml)"
    storage = settings.environment_settings(environment).storage
    found = storage_resources(environment)
    if storage.backend == GCS and not os.environ.get(storage.url_env):
        raise ConfigError(
            where,
            [
                f"{storage.url_env}: not set; this environment keeps artifacts, step outputs and bentos on GCS "
                "(storage.backend = 'gcs'): set it to gs://bucket/prefix"
            ],
        )
    # raw_images' config or the project's current dataset, where either chooses (dataset_runs.py); a pinned version is
    # read from the dataset store, not its source, and `runner` checks the store holds it.
    chosen = storage_check_target(run_config)
    source, setting, value = chosen or _dataset_setting(run_config)
    dataset = found["dataset"]
    if value is not None or source:
        dataset = dataset.model_copy(update={"root": value or ""})
    elif storage.dataset_source == GCS:
        dataset = dataset.model_copy(update={"root": ""})
    problem = "" if chosen == READ_FROM_STORE else _problem(dataset)
    if problem:
        shown = f" = {value!r}" if value else ""
        raise ConfigError(source or where, [f"{setting}{shown}: {problem}"])
    problem = _problem(found["artifacts"])
    if problem:
        shown = os.environ.get(storage.url_env) if storage.backend == GCS else settings.artifacts_dir()
        setting = storage.url_env if storage.backend == GCS else "MLOPS_HOME"
        raise ConfigError(where, [f"{setting} = {str(shown)!r}: {problem}"])


def _problem(resource: dg.ConfigurableResource) -> str:
    """The resource's own `problem()`, with its environment variables read (their presence is checked by the caller)
    and its nested resources (the GCS client) set up and torn down as in a run."""
    with resource.process_config_and_initialize_cm() as initialized:
        return initialized.problem()
