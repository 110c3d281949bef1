"""Launchpad presets for the registry jobs: each opens filled with the version it most likely acts on, read from the
registry when the code location loads (never a `version: 0` placeholder)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from mlops_assets.lib.registry.datasets import read_only_engine
from mlops_assets.lib.registry.schema import DISABLED, PRODUCTION, STAGING, ModelVersion, VersionState
from mlops_assets.lib.settings_validation import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegistryPresets:
    """Version numbers the registry jobs open with (None: the registry has none such; the field is then left out)."""

    to_promote: int | None = None  # the staging version, else the newest version not in production
    to_disable: int | None = None  # the newest version that is neither in production nor disabled
    to_enable: int | None = None  # the newest disabled version


def presets_from(statuses: list[tuple[int, str]]) -> RegistryPresets:
    """Presets from (version number, status) pairs, oldest first."""
    newest_first = sorted(statuses, reverse=True)
    staging = [number for number, status in newest_first if status == STAGING]
    candidates = [number for number, status in newest_first if status not in (PRODUCTION, DISABLED)]
    disabled = [number for number, status in newest_first if status == DISABLED]
    return RegistryPresets(
        to_promote=(staging or candidates or [None])[0],
        to_disable=(candidates or [None])[0],
        to_enable=(disabled or [None])[0],
    )


def read_presets() -> RegistryPresets:
    """The presets of the environment's registry, read without changing it; empty ones when it does not exist yet
    or cannot be read (a warning says why: the launchpad then asks for the version)."""
    from mlops_assets import settings
    from mlops_assets.environments import get_environment

    try:
        environment = get_environment()
        engine = read_only_engine(settings.registry_url(settings.environment_settings(environment).registry))
        if engine is None:
            return RegistryPresets()
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(ModelVersion.number, VersionState.status).join(
                        VersionState,
                        (VersionState.version_id == ModelVersion.id) & (VersionState.environment == environment),
                    )
                ).all()
        finally:
            engine.dispose()
    except (SQLAlchemyError, ConfigError, OSError) as error:
        log.warning(
            "The model registry could not be read for the registry jobs' presets (%s): the launchpad asks for the "
            "version.",
            str(error).splitlines()[0],
        )
        return RegistryPresets()
    return presets_from([(number, status) for number, status in rows])
