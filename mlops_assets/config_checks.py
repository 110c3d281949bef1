"""Checks before anything runs: the environment file, the databases, the model registry file and the run config.

Each problem is refused in one line naming the setting, its value and what is allowed (a ConfigError), or, for a
damaged registry, the file and how to restore it (a RegistryFileError), before a Dagster run is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg
from pydantic import ValidationError

from mlops_assets import settings
from mlops_assets.defs.packaging.assets import BentoConfig
from mlops_assets.defs.training.assets import TrainingConfig
from mlops_assets.defs.validation.assets import ValidatedImagesConfig
from mlops_assets.lib.data.expectation_profiles import DEFAULT_PROFILE, load_profile
from mlops_assets.lib.environment_settings import EnvironmentSettings, load_environment_settings
from mlops_assets.lib.errors import PluginError
from mlops_assets.lib.models.plugins import resolve_plugin
from mlops_assets.lib.settings_validation import ConfigError, allowed, problems
from mlops_assets.registry_home import open_registry

RUN_CONFIG = "run config"
# The pipeline's assets with config, by op name: checked with their own pydantic bounds before Dagster sees them.
PIPELINE_CONFIGS: dict[str, type[dg.Config]] = {
    "validated_images": ValidatedImagesConfig,
    "trained_model": TrainingConfig,
    "bento": BentoConfig,
}
# Dagster's scalar type names, in words.
_DAGSTER_KINDS = {"Int": "an integer", "Float": "a number", "Bool": "true or false", "String": "text", "Any": "any"}


def environment_settings(environment: str | None = None) -> EnvironmentSettings:
    """The checked settings of the environment (MLOPS_ENV, default local) from deployments/<environment>.yaml."""
    from mlops_assets.environments import get_environment

    environment = environment or get_environment()
    return load_environment_settings(settings.environment_file(environment), environment)


def _from_environment(value: Any) -> bool:
    """Dagster's `{env: NAME}`: a value read from an environment variable when the run starts."""
    return isinstance(value, Mapping) and set(value) == {"env"}


def _op_config_problems(run_config: Mapping) -> list[str]:
    ops = run_config.get("ops")
    found: list[str] = []
    if not isinstance(ops, Mapping):
        return found
    for name, config_class in PIPELINE_CONFIGS.items():
        section = ops.get(name)
        config = section.get("config") if isinstance(section, Mapping) else None
        if not isinstance(config, Mapping):
            continue  # absent, or a shape Dagster's own check below names
        # The plug-in checks its own params (_plugin_params_problems): their names and bounds are its own.
        values = {key: value for key, value in config.items() if key in config_class.model_fields}
        values.pop("plugin_params", None)
        values = {key: value for key, value in values.items() if not _from_environment(value)}
        try:
            config_class.model_validate(values, strict=True)
        except ValidationError as error:
            found += problems(error, config_class, prefix=f"ops.{name}.config")
    return found


def _plugin_params_problems(run_config: Mapping) -> list[str]:
    """The chosen model plug-in's verdict on `ops.trained_model.config.plugin_params` (ModelPlugin.check_params)."""
    config = _value_at(run_config, ["ops", "trained_model", "config"])
    if not isinstance(config, Mapping):
        return []
    params, plugin = config.get("plugin_params"), config.get("plugin", TrainingConfig.model_fields["plugin"].default)
    if not isinstance(params, Mapping) or not isinstance(plugin, str):
        return []  # a shape Dagster's own check names
    try:
        plugin_class = resolve_plugin(plugin)
    except PluginError:
        return []  # the plugin setting itself is refused, with its own message
    given = {name: value for name, value in params.items() if not _from_environment(value)}
    return [f"ops.trained_model.config.plugin_params.{phrase}" for phrase in plugin_class.check_params(given)]


def _config_type_at(root: Any, path: list) -> Any:
    config_type = root
    for part in path:
        fields = getattr(config_type, "fields", None)
        if isinstance(part, str) and fields and part in fields:
            config_type = fields[part].config_type
        elif hasattr(config_type, "inner_type"):
            config_type = config_type.inner_type
        else:
            return None
    return config_type


def _value_at(run_config: Mapping, path: list) -> Any:
    value: Any = run_config
    for part in path:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _pipeline_field(path: list):
    """The pydantic field of a pipeline asset's config at `ops.<asset>.config.<field>`, if the path is one."""
    if len(path) == 4 and path[0] == "ops" and path[2] == "config" and path[1] in PIPELINE_CONFIGS:
        return PIPELINE_CONFIGS[path[1]].model_fields.get(path[3])
    return None


def _expected(snap: Any, path: list) -> str:
    field = _pipeline_field(path)
    if field is not None and str(snap.kind.value) != "ENUM":
        return allowed(field)
    if snap.enum_values:
        return "one of " + ", ".join(repr(value.value) for value in snap.enum_values)
    if snap.fields:
        return "a mapping of " + ", ".join(field.name for field in snap.fields)
    return _DAGSTER_KINDS.get(snap.given_name or snap.key, snap.given_name or snap.key)


def _dagster_problems(error: dg.DagsterInvalidConfigError, job_def: dg.JobDefinition, run_config: Mapping) -> list:
    """Dagster's config errors (unknown, missing or mistyped settings) in the same one-phrase form."""
    from dagster._config.errors import (
        FieldNotDefinedErrorData,
        FieldsNotDefinedErrorData,
        MissingFieldErrorData,
        MissingFieldsErrorData,
        RuntimeMismatchErrorData,
    )

    root = job_def.run_config_schema.config_type
    found = []
    for item in error.errors:
        # A field, a list item or (in a map such as plugin_params) the key whose value is wrong.
        path = [
            next(
                (getattr(entry, name) for name in ("field_name", "list_index", "map_key") if hasattr(entry, name)), None
            )
            for entry in item.stack.entries
        ]
        data = item.error_data
        where = ".".join(str(part) for part in path)
        if isinstance(data, FieldNotDefinedErrorData | FieldsNotDefinedErrorData):
            names = [data.field_name] if isinstance(data, FieldNotDefinedErrorData) else list(data.field_names)
            parent = _config_type_at(root, path)
            known = ", ".join(sorted(getattr(parent, "fields", None) or {}))
            for name in names:
                setting = f"{where}.{name}" if where else name
                value = _value_at(run_config, [*path, name])
                found.append(f"{setting} = {value!r}: unknown setting (known: {known or 'none'})")
        elif isinstance(data, MissingFieldErrorData | MissingFieldsErrorData):
            names = [data.field_name] if isinstance(data, MissingFieldErrorData) else list(data.field_names)
            found += [f"{where}.{name}: missing" if where else f"{name}: missing" for name in names]
        elif isinstance(data, RuntimeMismatchErrorData):
            found.append(
                f"{where} = {_value_at(run_config, path)!r}: expected {_expected(data.config_type_snap, path)}"
            )
        elif isinstance(getattr(data, "message", None), str):
            # A failure while resolving a value (e.g. an unset `{env: NAME}`): the error's own message, without
            # its class name and stack.
            reason = data.message.strip().splitlines()[0].split(": ", 1)[-1]
            found.append(f"{where} = {_value_at(run_config, path)!r}: {reason}")
        else:
            found.append(f"{where or 'the run config'}: {item.message.splitlines()[0]}")
    return found


def check_run_config(run_config: Any, job_def: dg.JobDefinition, source: str = RUN_CONFIG) -> None:
    """Refuse run config the pipeline job cannot run with, before a run exists: unknown or missing settings, wrong
    types, values outside an asset config's bounds, model plug-in params the plug-in refuses, an expectation profile
    that does not load or check out.

    Raises ConfigError (one line: the source, then each setting with its value and what is allowed).
    """
    run_config = {} if run_config is None else run_config
    if not isinstance(run_config, Mapping):
        raise ConfigError(source, [f"expected a mapping of run config (ops: ...), not {run_config!r}"])
    found = _op_config_problems(run_config) + _plugin_params_problems(run_config)
    try:
        dg.validate_run_config(job_def, dict(run_config))
    except dg.DagsterInvalidConfigError as error:
        # Only what the bounds check above did not already name.
        named = {phrase.split(" ")[0].rstrip(":") for phrase in found}
        found += [
            phrase for phrase in _dagster_problems(error, job_def, run_config) if phrase.split(" ")[0] not in named
        ]
    if found:
        raise ConfigError(source, found)
    expectations = _value_at(run_config, ["ops", "validated_images", "config", "expectations"])
    if expectations is None or _from_environment(expectations):
        expectations = DEFAULT_PROFILE
    load_profile(expectations)  # raises ProfileError naming the profile file and each bad setting


def check_before_run(run_config: Any, source: str = RUN_CONFIG) -> None:
    """Everything a pipeline run reads before its first asset: the environment file, the databases (a PostgreSQL
    Dagster instance or registry must answer), the registry file and the run config (with the expectation profile it
    selects). Raises ConfigError or RegistryFileError; creates nothing but a new registry on a new home."""
    from mlops_assets.definitions import build_definitions
    from mlops_assets.defs.jobs import PIPELINE_JOB_NAME
    from mlops_assets.storage_checks import check_storage

    environment_settings()
    settings.check_instance_database()  # before the runner opens the instance on it
    open_registry().close()  # its PostgreSQL server is checked first (registry_home.registry_url)
    check_run_config(run_config, build_definitions().resolve_job_def(PIPELINE_JOB_NAME), source)
    check_storage(run_config)  # the dataset source and the artifact bucket, named by the setting to fix
