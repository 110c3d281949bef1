"""The home's model registry (and its dataset catalogue), opened with what the home holds, so an empty registry file
next to a history is refused instead of started over (see lib/registry/database.py). Light on purpose: `mlops models
list` and `mlops datasets list` open it without loading Dagster or the data stack."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets import settings
from mlops_assets.lib import postgres
from mlops_assets.lib.environment_settings import POSTGRESQL
from mlops_assets.lib.registry.registry import ModelRegistry

if TYPE_CHECKING:
    from mlops_assets.lib.registry.datasets import DatasetCatalog


def _count_runs(runs_db: Path) -> int | None:
    try:
        connection = sqlite3.connect(f"file:{runs_db}?mode=ro", uri=True)
        try:
            return connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.Error:
        return None


def home_history() -> list[str]:
    """What MLOPS_HOME holds besides the registry, in words ("2 bentos in the BentoML store", ...); [] for a new home.

    A registry file found empty next to any of these had versions (see ModelRegistry's `home_history`).
    """
    found = []
    store = settings.bentoml_home()
    for kind, label in (("models", "model(s)"), ("bentos", "bento(s)")):
        count = sum(1 for path in (store / kind).glob("*/*") if path.is_dir())
        if count:
            found.append(f"{count} {label} in the BentoML store ({store / kind})")
    runs_db = settings.dagster_home() / "history" / "runs.db"
    if runs_db.exists():
        runs = _count_runs(runs_db)
        if runs is None:
            found.append(f"a Dagster run database ({runs_db})")
        elif runs:
            found.append(f"{runs} Dagster run(s) ({runs_db})")
    artifacts = settings.artifacts_dir()
    if artifacts.is_dir() and any(path.is_dir() for path in artifacts.glob("*/*")):
        found.append(f"stored artifacts ({artifacts})")
    return found


def registry_url(environment: str) -> str:
    """The URL of the environment's registry (its `registry:` settings); a PostgreSQL one is checked first: an unset,
    malformed or unreachable URL is a ConfigError naming the variable to fix."""
    registry = settings.environment_settings(environment).registry
    purpose = f"the {environment} model registry"
    if registry.database == POSTGRESQL:
        return postgres.checked_url(registry.url_env, purpose, plain_allowed=True)
    url = settings.registry_url(registry)
    if postgres.is_postgres(url):  # a SQLite environment pointed at a server by its variable
        postgres.checked_url(registry.url_env, purpose, plain_allowed=True)
    return url


def open_registry(environment: str | None = None) -> ModelRegistry:
    """The environment's model registry, its file checked against what this home holds (see `home_history`), its
    PostgreSQL server checked to answer (see `registry_url`)."""
    environment = environment or settings.environment_name()  # not environments.py: it imports Dagster and GCP
    return ModelRegistry(registry_url(environment), environment, home_history=home_history())


@contextmanager
def open_catalog() -> Iterator[DatasetCatalog]:
    """The catalogue of this environment's registry (its file checked as `mlops models` checks it)."""
    with open_registry() as models:
        yield models.datasets
