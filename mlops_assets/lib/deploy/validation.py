"""The `cloud_run:` settings of a deployment stage, and the checks Cloud Run would make, done before anything is sent.

Cloud Run facts used here (public Cloud Run documentation, GPU and resource-limit pages, as of 2026-11):
- one GPU per instance; an `nvidia-l4` instance needs at least 4 vCPU and 16 GiB, an `nvidia-rtx-pro-6000` at least
  20 vCPU and 80 GiB; GPUs need instance-based billing (CPU always allocated);
- the GPU is offered in the regions listed in GPU_TYPES (some of them by invitation);
- memory above 4/8/16/24 GiB needs at least 2/4/6/8 vCPU; 4, 6 and 8 vCPU need at least 2, 4 and 4 GiB.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlops_assets.lib.settings_validation import ConfigError, validate


@dataclass(frozen=True)
class GpuType:
    """What Cloud Run requires of an instance carrying this GPU, and where it offers it."""

    min_cpu: float
    min_memory_gib: float
    max_cpu: float
    max_memory_gib: float
    regions: tuple[str, ...]
    driver_cuda: str  # the CUDA version of the driver Cloud Run installs: the bento's torch must be built for <= it


GPU_TYPES: dict[str, GpuType] = {
    "nvidia-l4": GpuType(
        min_cpu=4,
        min_memory_gib=16,
        max_cpu=8,
        max_memory_gib=32,
        regions=("asia-south1", "asia-southeast1", "europe-west1", "europe-west4", "us-central1", "us-east4"),
        driver_cuda="12.2",
    ),
    "nvidia-rtx-pro-6000": GpuType(
        min_cpu=20,
        min_memory_gib=80,
        max_cpu=44,
        max_memory_gib=176,
        regions=("asia-south2", "asia-southeast1", "europe-west4", "us-central1"),
        driver_cuda="13.0",
    ),
}

# Without a GPU: the CPU counts Cloud Run accepts above one vCPU (below one, fractions need request-based billing,
# which this target never uses), and the least memory each needs.
CPU_CHOICES = (1.0, 2.0, 4.0, 6.0, 8.0)
MIN_MEMORY_GIB_FOR_CPU = {4.0: 2.0, 6.0: 4.0, 8.0: 4.0}
# Memory above the key (GiB) needs at least the value (vCPU).
MIN_CPU_FOR_MEMORY_GIB = ((24.0, 8.0), (16.0, 6.0), (8.0, 4.0), (4.0, 2.0))
MAX_MEMORY_GIB_WITHOUT_GPU = 32.0

# Kubernetes quantity suffixes Cloud Run accepts for memory, in GiB.
_MEMORY_UNITS = {"Gi": 1.0, "Mi": 1 / 1024, "G": 1e9 / 2**30, "M": 1e6 / 2**30}
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)(Gi|Mi|G|M)$")
# Cloud Run service names: lowercase letters, digits and hyphens, starting with a letter, at most 49 characters.
SERVICE_NAME = r"^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$"
_ENV_VAR = r"^[A-Za-z_][A-Za-z0-9_]*$"
# The Dagster UI's port (`mlops dev`, `make dev`): no local stage may take it.
DAGSTER_UI_PORT = 3000


class CloudRunSettings(BaseModel):
    """A stage's Cloud Run service: `deployments.<stage>.cloud_run:`."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    # The environment variable holding the Google Cloud project id (read when deploying).
    project_env: str = Field("MLOPS_GCP_PROJECT", pattern=_ENV_VAR)
    region: str = Field("europe-west4", min_length=1)
    service: str = Field(pattern=SERVICE_NAME)
    # Artifact Registry Docker repository (in `region` of the project): images are
    # <region>-docker.pkg.dev/<project>/<repository>/<bento name>:<bento version>, as `bentoml containerize` tags them.
    repository: str = Field("mlops-bentos", min_length=1)
    # GPU type (node_selector.accelerator); null serves on CPU only.
    accelerator: str | None = "nvidia-l4"
    # false: GPU instances may all land in one zone (cheaper, best effort if that zone fails); needs the quota
    # "without zonal redundancy".
    gpu_zonal_redundancy_disabled: bool = True
    # The project's GPU quota for this GPU type in `region` (Cloud Run Admin API quotas): max_instances must fit.
    gpu_quota: int = Field(1, ge=0)
    cpu: float = Field(4.0, gt=0)
    memory: str = Field("16Gi", min_length=1)
    # Extra CPU while an instance starts (model loading, CUDA initialisation).
    startup_cpu_boost: bool = True
    # Requests one instance takes at once (max_instance_request_concurrency); the bento batches them.
    concurrency: int = Field(64, ge=1, le=1000)
    min_instances: int = Field(0, ge=0, le=1000)
    max_instances: int = Field(1, ge=1, le=1000)
    # Seconds an instance may take from start to answering /readyz (GPU cold start: image pull, CUDA, model load).
    startup_timeout_s: int = Field(240, ge=10, le=3600)
    # Secret Manager secret holding the serving API key (given to the server as the serving section's api_key_env).
    api_key_secret: str | None = "mlops-api-key"
    api_key_secret_version: str = Field("latest", min_length=1)
    # The runtime service account of the revisions; null: the project's default compute service account.
    service_account: str | None = None
    # Main-URL traffic percentages the new revision goes through after its smoke test at its tag URL (at 0 %).
    traffic_steps: list[int] = Field(default_factory=lambda: [10, 100], min_length=1)
    # The Admin API endpoint; null: Cloud Run's own (run.googleapis.com). Another URL points the client elsewhere.
    api_endpoint: str | None = None
    # Seconds to wait for one create/update operation to finish.
    operation_timeout_s: int = Field(900, ge=30, le=3600)
    # Expected load, for `mlops deploy STAGE --plan` only: requests per day and the mean seconds a request is active.
    expected_requests_per_day: int = Field(10_000, ge=0)
    mean_request_s: float = Field(0.05, gt=0)


def memory_gib(memory: str) -> float:
    """`16Gi`, `512Mi`, `17G` as GiB; raises ValueError naming the allowed forms."""
    match = _MEMORY.match(memory)
    if match is None:
        raise ValueError(f"memory = {memory!r}: expected a size such as '16Gi', '512Mi' or '17G'")
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2)]


def _prefix(stage: str) -> str:
    return f"deployments.{stage}.cloud_run"


def _missing(stage: str) -> str:
    return f"{_prefix(stage)}: missing (target cloud_run needs the Cloud Run service settings)"


def _resource_problems(settings: CloudRunSettings, prefix: str) -> list[str]:
    found: list[str] = []
    try:
        memory = memory_gib(settings.memory)
    except ValueError as error:
        return [f"{prefix}.{error}"]
    cpu = settings.cpu
    if settings.accelerator is None:
        if cpu not in CPU_CHOICES:
            found.append(f"{prefix}.cpu = {cpu:g}: expected one of {', '.join(f'{c:g}' for c in CPU_CHOICES)}")
        if memory > MAX_MEMORY_GIB_WITHOUT_GPU:
            found.append(
                f"{prefix}.memory = {settings.memory!r}: at most {MAX_MEMORY_GIB_WITHOUT_GPU:g}Gi on Cloud Run"
            )
    needed = next((least for above, least in MIN_CPU_FOR_MEMORY_GIB if memory > above), 1.0)
    if cpu < needed:
        found.append(f"{prefix}.cpu = {cpu:g}: memory {settings.memory} needs at least {needed:g} vCPU on Cloud Run")
    least_memory = max((gib for count, gib in MIN_MEMORY_GIB_FOR_CPU.items() if cpu >= count), default=0.0)
    if memory < least_memory:
        found.append(
            f"{prefix}.memory = {settings.memory!r}: {cpu:g} vCPU need at least {least_memory:g}Gi on Cloud Run"
        )
    return found


def _gpu_problems(settings: CloudRunSettings, prefix: str) -> list[str]:
    if settings.accelerator is None:
        return []
    gpu = GPU_TYPES.get(settings.accelerator)
    if gpu is None:
        return [f"{prefix}.accelerator = {settings.accelerator!r}: expected one of {', '.join(GPU_TYPES)} or null"]
    found: list[str] = []
    name = settings.accelerator
    if not gpu.min_cpu <= settings.cpu <= gpu.max_cpu:
        found.append(f"{prefix}.cpu = {settings.cpu:g}: {name} needs {gpu.min_cpu:g} to {gpu.max_cpu:g} vCPU")
    memory = memory_gib(settings.memory)
    if not gpu.min_memory_gib <= memory <= gpu.max_memory_gib:
        found.append(
            f"{prefix}.memory = {settings.memory!r}: {name} needs {gpu.min_memory_gib:g}Gi to {gpu.max_memory_gib:g}Gi"
        )
    if settings.region not in gpu.regions:
        found.append(f"{prefix}.region = {settings.region!r}: {name} is offered in {', '.join(gpu.regions)}")
    if settings.max_instances > settings.gpu_quota:
        found.append(
            f"{prefix}.max_instances = {settings.max_instances}: above gpu_quota = {settings.gpu_quota} (one {name} "
            "per instance); lower it or request more quota and raise gpu_quota"
        )
    return found


def _scaling_problems(settings: CloudRunSettings, prefix: str) -> list[str]:
    found: list[str] = []
    if settings.min_instances > settings.max_instances:
        found.append(
            f"{prefix}.min_instances = {settings.min_instances}: above max_instances = {settings.max_instances}"
        )
    steps = settings.traffic_steps
    if any(not 0 < step <= 100 for step in steps) or steps != sorted(set(steps)) or steps[-1] != 100:
        found.append(f"{prefix}.traffic_steps = {steps}: expected increasing percentages from 1 to 100 ending at 100")
    return found


def cloud_run_problems(settings: CloudRunSettings, stage: str) -> list[str]:
    """Each setting Cloud Run would refuse (or this project cannot serve with), one phrase naming it; [] when none."""
    prefix = _prefix(stage)
    resources = _resource_problems(settings, prefix)
    if any(".memory = " in problem and "expected a size" in problem for problem in resources):
        return resources  # memory unreadable: the GPU checks would only repeat it
    return resources + _gpu_problems(settings, prefix) + _scaling_problems(settings, prefix)


def parse_cloud_run(data: Mapping[str, Any] | None, stage: str, source: str) -> CloudRunSettings:
    """One `cloud_run:` section checked on its own, as loading the environment file checks it (types, then
    `cloud_run_problems`); raises ConfigError naming every wrong setting in one line."""
    if data is None:
        raise ConfigError(source, [_missing(stage)])
    settings = validate(CloudRunSettings, data, source, prefix=_prefix(stage))
    problems = cloud_run_problems(settings, stage)
    if problems:
        raise ConfigError(source, problems)
    return settings


def _port_problems(deployments: Any, server_port: int) -> list[str]:
    """A local stage's port that another server of this project binds: the other local stage's, server.port
    (`mlops deploy local`) or the Dagster UI's; server.port that is the Dagster UI's. Refused whatever the hosts, as
    a server on all interfaces takes the port on every one."""
    found: list[str] = []
    if server_port == DAGSTER_UI_PORT:
        found.append(
            f"server.port = {server_port}: the same port as the Dagster UI (`mlops dev`); `mlops deploy local` needs "
            "its own"
        )
    staging, production = deployments.staging, deployments.production
    if staging.target == production.target == "local" and staging.port == production.port:
        found.append(
            f"deployments.production.port = {production.port}: the same port as deployments.staging.port; "
            "each local stage needs its own"
        )
    reserved = {
        DAGSTER_UI_PORT: "the Dagster UI (`mlops dev`)",
        server_port: "server.port (`mlops deploy local`)",
    }
    for stage in ("staging", "production"):
        stage_settings = getattr(deployments, stage)
        if stage_settings.target == "local" and stage_settings.port in reserved:
            found.append(
                f"deployments.{stage}.port = {stage_settings.port}: the same port as "
                f"{reserved[stage_settings.port]}; each needs its own"
            )
    return found


def stage_problems(deployments: Any, server_port: int) -> list[str]:
    """What the types alone cannot refuse in a checked `deployments:` section, one phrase per setting: a cloud_run
    stage without (or with a wrong) `cloud_run:` section, `cloud_run:` on a local stage, a stage `after` itself, a
    local stage on the other's port, on `server_port` (the environment's `server.port`) or on the Dagster UI's;
    [] when none."""
    found: list[str] = []
    for stage in ("staging", "production"):
        stage_settings = getattr(deployments, stage)
        if stage_settings.target == "cloud_run":
            if stage_settings.cloud_run is None:
                found.append(_missing(stage))
            else:
                found.extend(cloud_run_problems(stage_settings.cloud_run, stage))
        elif stage_settings.cloud_run is not None:
            found.append(f"{_prefix(stage)}: set, but target = 'local'; set target: cloud_run or remove it")
        if stage_settings.after == stage:
            found.append(f"deployments.{stage}.after = {stage!r}: a stage cannot wait for itself")
    return found + _port_problems(deployments, server_port)


def check_deployment_stages(deployments: Any, source: str, server_port: int) -> None:
    """Raise ConfigError (one line, naming each wrong setting) for every problem `stage_problems` finds."""
    found = stage_problems(deployments, server_port)
    if found:
        raise ConfigError(source, found)


def startup_probe_failures(settings: CloudRunSettings, period_s: int) -> int:
    """How many failed /readyz probes, `period_s` apart, fit in the cold-start budget."""
    return max(1, math.ceil(settings.startup_timeout_s / period_s))
