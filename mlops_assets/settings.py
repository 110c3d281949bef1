"""Where local state lives: everything under one MLOPS_HOME directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.lib.errors import MLOpsError

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from mlops_assets.lib.environment_settings import EnvironmentSettings, RegistrySettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def mlops_home() -> Path:
    """The project's home: MLOPS_HOME, or `.mlops/` in the project root (the cwd when installed elsewhere)."""
    configured = os.environ.get("MLOPS_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    base = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()
    return base / ".mlops"


ENVIRONMENT_VARIABLE = "MLOPS_ENV"
KNOWN_ENVIRONMENTS = ("local", "staging", "production")


def environment_name() -> str:
    """The selected environment: MLOPS_ENV, `local` when unset; a ConfigError names the variable and the allowed
    values when it is not a known environment (case matters: each is a file, deployments/<name>.yaml)."""
    environment = os.environ.get(ENVIRONMENT_VARIABLE) or "local"
    if environment not in KNOWN_ENVIRONMENTS:
        from mlops_assets.lib.settings_validation import ConfigError

        choices = ", ".join(repr(name) for name in KNOWN_ENVIRONMENTS)
        raise ConfigError(
            "environment", [f"{ENVIRONMENT_VARIABLE} = {environment!r}: expected one of {choices} (deployments/)"]
        )
    return environment


def environment_settings(environment: str | None = None) -> EnvironmentSettings:
    """The checked settings of `environment` (default: the selected one); raises ConfigError naming the file and
    each bad setting, or the missing file of an unknown environment."""
    from mlops_assets.lib.environment_settings import load_environment_settings

    environment = environment or environment_name()
    return load_environment_settings(environment_file(environment), environment)


def dagster_home(environment: str | None = None) -> Path:
    """DAGSTER_HOME of an environment (default: the selected one): `dagster/` for local, `dagster-<environment>/`
    for the others, so one MLOPS_HOME can run in several environments, each with its own instance config."""
    environment = environment or environment_name()
    return mlops_home() / ("dagster" if environment == "local" else f"dagster-{environment}")


def bentoml_home() -> Path:
    return mlops_home() / "bentoml"


def datasets_dir() -> Path:
    return mlops_home() / "datasets"


def artifacts_dir() -> Path:
    return mlops_home() / "artifacts"


def deployments_dir() -> Path:
    return mlops_home() / "deployments"


def logs_dir() -> Path:
    return mlops_home() / "logs"


def locks_dir() -> Path:
    """Lock files that let several `mlops` processes share one home (see `home_lock`)."""
    return mlops_home() / "locks"


# How long a process waits for another to finish creating the instance or writing to the BentoML store.
LOCK_TIMEOUT_S = 1800


class HomeLockTimeout(MLOpsError, TimeoutError):
    """Another process held one of the home's locks for longer than the caller would wait."""


@contextmanager
def home_lock(name: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the home's lock `name` (an flock on `locks/<name>.lock`, released by the OS if the holder dies).

    Raises HomeLockTimeout naming the lock file when another process held it for `timeout_s` seconds.
    """
    from filelock import FileLock, Timeout

    locks_dir().mkdir(parents=True, exist_ok=True)
    path = locks_dir() / f"{name}.lock"
    lock = FileLock(path)
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout as error:
        raise HomeLockTimeout(
            f"Another mlops process held {path} for {timeout_s:.0f} s; see `ps` for a hung `mlops` process on this "
            "home, stop it, and try again."
        ) from error
    try:
        yield
    finally:
        lock.release()


def export_environment() -> dict[str, str]:
    """Point Dagster and BentoML at MLOPS_HOME; call before either library is imported."""
    home = mlops_home()
    # artifacts/ and datasets/ are made by their writers: an environment that keeps them on GCS has none here.
    for directory in (dagster_home(), bentoml_home(), logs_dir()):
        directory.mkdir(parents=True, exist_ok=True)
    values = {
        "MLOPS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home()),
        "BENTOML_HOME": str(bentoml_home()),
        # BentoML asks to report usage on first start; a pipeline must not phone home.
        "BENTOML_DO_NOT_TRACK": "true",
    }
    write_instance_config()
    os.environ.update(values)
    return values


def write_instance_config(environment: str | None = None) -> Path:
    """Write DAGSTER_HOME/dagster.yaml as the environment's file says (instance_config.py) when it differs; returns
    its path. Raises ConfigError for a bad environment file."""
    from mlops_assets.instance_config import instance_yaml
    from mlops_assets.lib.atomic import atomic_write_text

    path = dagster_home(environment) / "dagster.yaml"
    text = instance_yaml(environment_settings(environment))
    if not path.exists() or path.read_text() != text:
        # Written whole, so a process starting at the same moment never reads half of it.
        atomic_write_text(path, text)
    return path


def open_instance() -> DagsterInstance:
    """The Dagster instance under DAGSTER_HOME (`export_environment` first); close it when done.

    Created under the home's `dagster-instance` lock: on first use Dagster creates and migrates its SQLite storage,
    and two processes doing that at once fail ("table ... already exists"). An instance on PostgreSQL is checked
    first (`check_instance_database`): an unset, malformed or unreachable URL is a ConfigError naming its variable.
    """
    import dagster as dg

    check_instance_database()
    with home_lock("dagster-instance"):
        return dg.DagsterInstance.get()


def check_instance_database(environment: str | None = None) -> None:
    """For an instance on PostgreSQL (`dagster: database: postgresql`): the URL in `dagster.url_env` is set, names
    the psycopg2 driver and reaches the server and database. Raises ConfigError naming the variable and PostgreSQL's
    reason; a SQLite instance needs no check."""
    from mlops_assets.lib import postgres
    from mlops_assets.lib.environment_settings import POSTGRESQL

    found = environment_settings(environment)
    if found.dagster.database == POSTGRESQL:
        # Dagster hands the URL to SQLAlchemy as it is, so it must name the psycopg2 driver itself.
        postgres.checked_url(found.dagster.url_env, f"the {found.environment} Dagster instance", plain_allowed=False)


def environment_file(environment: str) -> Path:
    """An environment's settings (server, promotion policy): deployments/<environment>.yaml."""
    return PROJECT_ROOT / "deployments" / f"{environment}.yaml"


def registry_url(registry: RegistrySettings | None = None) -> str:
    """The model registry database: the URL in the variable `registry.url_env` names (MLOPS_REGISTRY_URL by default),
    else, for a SQLite registry, the file MLOPS_HOME/registry.db. Raises ConfigError for a PostgreSQL registry whose
    variable is not set."""
    from mlops_assets.lib import postgres
    from mlops_assets.lib.environment_settings import POSTGRESQL, RegistrySettings

    registry = registry or RegistrySettings()
    url = os.environ.get(registry.url_env)
    if url:
        return url
    if registry.database == POSTGRESQL:
        raise postgres.unset(registry.url_env, "the model registry")
    return f"sqlite:///{mlops_home() / 'registry.db'}"
