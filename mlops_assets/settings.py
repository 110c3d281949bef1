"""Where local state lives: everything under one MLOPS_HOME directory."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def mlops_home() -> Path:
    """The project's home: MLOPS_HOME, or `.mlops/` in the project root (the cwd when installed elsewhere)."""
    configured = os.environ.get("MLOPS_HOME")
    if configured:
        return Path(configured).expanduser().resolve()
    base = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()
    return base / ".mlops"


def dagster_home() -> Path:
    return mlops_home() / "dagster"


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


def export_environment() -> dict[str, str]:
    """Point Dagster and BentoML at MLOPS_HOME; call before either library is imported."""
    home = mlops_home()
    for directory in (dagster_home(), bentoml_home(), datasets_dir(), artifacts_dir(), logs_dir()):
        directory.mkdir(parents=True, exist_ok=True)
    values = {
        "MLOPS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home()),
        "BENTOML_HOME": str(bentoml_home()),
        # BentoML asks to report usage on first start; a pipeline must not phone home.
        "BENTOML_DO_NOT_TRACK": "true",
    }
    instance_config = dagster_home() / "dagster.yaml"
    if not instance_config.exists():
        # Default SQLite storage under DAGSTER_HOME, stated explicitly; no usage reporting.
        instance_config.write_text("telemetry:\n  enabled: false\n")
    os.environ.update(values)
    return values


def environment_file(environment: str) -> Path:
    """An environment's settings (server, promotion policy): deployments/<environment>.yaml."""
    return PROJECT_ROOT / "deployments" / f"{environment}.yaml"


def registry_url() -> str:
    """The model registry database: MLOPS_REGISTRY_URL (e.g. PostgreSQL), else a SQLite file in MLOPS_HOME."""
    return os.environ.get("MLOPS_REGISTRY_URL") or f"sqlite:///{mlops_home() / 'registry.db'}"
