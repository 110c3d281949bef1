"""The code location `workspace.yaml` defines, so runs started by `mlops` belong to it like runs from the UI."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets import settings
from mlops_assets.lib.errors import MLOpsError

if TYPE_CHECKING:
    from dagster._core.definitions.reconstruct import ReconstructableJob
    from dagster._core.remote_origin import RemoteJobOrigin

LOCATION_NAME = "mlops_assets"


def workspace_file() -> Path:
    return settings.PROJECT_ROOT / "workspace.yaml"


@dataclass(frozen=True)
class CodeLocationJob:
    """A job loaded in this process from the code location's own code pointer, with the origin the UI gives it."""

    job: ReconstructableJob
    remote_origin: RemoteJobOrigin


def code_location_job(job_name: str) -> CodeLocationJob:
    """The job as the webserver sees it (same location origin, read from workspace.yaml), executable here.

    Runs the UI lists under a job are those tagged with its repository label (`<repository>@<location>`), which
    Dagster derives from the run's remote job origin; a run created with this origin is one of them. No code
    server is started: the definitions load in this process. Raises MLOpsError when workspace.yaml is missing
    or does not define the location.
    """
    # dagster is pinned exactly; these are the functions `dagster dev` uses to read the workspace file and its code
    # server uses to find the definitions in the module.
    from dagster._core.code_pointer import CodePointer
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.workspace.autodiscovery import loadable_targets_from_python_module
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    path = workspace_file()
    if not path.is_file():
        raise MLOpsError(
            f"{path} is missing; it defines the Dagster code location {LOCATION_NAME!r} that runs belong to. "
            "Restore it from the project (`python_module: mlops_assets.definitions`)."
        )
    origins = {origin.location_name: origin for origin in location_origins_from_yaml_paths([str(path)])}
    origin = origins.get(LOCATION_NAME)
    if not isinstance(origin, ManagedGrpcPythonEnvCodeLocationOrigin) or not origin.loadable_target_origin.module_name:
        raise MLOpsError(
            f"{path} defines no `python_module` code location named {LOCATION_NAME!r} (it has {sorted(origins)}); "
            f"name the location that loads mlops_assets.definitions {LOCATION_NAME!r}."
        )
    target = origin.loadable_target_origin
    # The code server resolves the working directory against its own; `dagster dev` runs in the project root.
    working_directory = str((path.parent / (target.working_directory or ".")).resolve())
    attribute = (
        target.attribute or loadable_targets_from_python_module(target.module_name, working_directory)[0].attribute
    )
    repository = ReconstructableRepository(
        CodePointer.from_module(target.module_name, attribute, working_directory),
        executable_path=target.executable_path or sys.executable,
    )
    job = repository.get_reconstructable_job(job_name)
    definition = job.get_repository_definition()
    # As dagster's execute_job does: the data the definitions recorded while loading travels with the job.
    job = job.with_repository_load_data(definition.repository_load_data)
    return CodeLocationJob(job, RemoteRepositoryOrigin(origin, definition.name).get_job_origin(job_name))
