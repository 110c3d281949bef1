"""The Kubernetes deployment as far as it can be checked without a cluster or a Docker engine: the Helm values against
the keys the Dagster chart defines, the Dockerfile's build context and entry point, and the run tag that sends runs
that train to the GPU node pool."""

import copy
import fnmatch
import json
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import yaml

from mlops_assets import settings
from mlops_assets.definitions import build_definitions
from mlops_assets.defs.jobs import PIPELINE_JOB_NAME
from mlops_assets.defs.training.placement import GPU_NODE_POOL, K8S_CONFIG_TAG, NODE_POOL_TAG

ROOT = settings.PROJECT_ROOT
K8S = ROOT / "deployments" / "k8s"
DAGSTER = str(Path(sys.executable).parent / "dagster")
# The keys dagster-k8s reads from a `dagster-k8s/config` tag (dagster_k8s.job.USER_DEFINED_K8S_JOB_CONFIG_SCHEMA).
K8S_CONFIG_KEYS = {
    "container_config",
    "pod_template_spec_metadata",
    "pod_spec_config",
    "job_config",
    "job_metadata",
    "job_spec_config",
    "merge_behavior",
}


def _values() -> dict:
    return yaml.safe_load((K8S / "values.yaml").read_text())


def _problems(values: dict) -> list[str]:
    schema = yaml.safe_load((K8S / "values-schema.yaml").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return sorted(
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(values)
    )


def test_helm_values_use_only_keys_the_dagster_chart_defines() -> None:
    jsonschema.Draft202012Validator.check_schema(yaml.safe_load((K8S / "values-schema.yaml").read_text()))
    assert _problems(_values()) == []


def test_a_misspelt_or_mistyped_helm_value_is_refused() -> None:
    values = _values()
    launcher = copy.deepcopy(values)
    k8s = launcher["runLauncher"]["config"]["k8sRunLauncher"]
    k8s["runK8SConfig"] = k8s.pop("runK8sConfig")
    assert _problems(launcher) == [
        "runLauncher.config.k8sRunLauncher: Additional properties are not allowed ('runK8SConfig' was unexpected)"
    ]
    logs = copy.deepcopy(values)
    logs["computeLogManager"]["config"]["gcsComputeLogManager"]["uploadInterval"] = "30"
    assert _problems(logs) == [
        "computeLogManager.config.gcsComputeLogManager.uploadInterval: '30' is not of type 'integer'"
    ]


def test_helm_values_agree_with_the_code_location_and_the_production_environment() -> None:
    values = _values()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"][0]["python_module"]
    arguments = deployment["dagsterApiGrpcArgs"]
    assert arguments == ["--module-name", workspace["module_name"], "--location-name", workspace["location_name"]]
    env = {item["name"]: item["value"] for item in deployment["env"]}
    assert env["MLOPS_ENV"] == "production"
    production = yaml.safe_load(settings.environment_file("production").read_text())
    assert production["storage"]["backend"] == "gcs"
    # Compute logs go where the production instance config puts them: <storage URL>/compute-logs.
    storage = env[production["storage"]["url_env"]]
    logs = values["computeLogManager"]["config"]["gcsComputeLogManager"]
    assert f"gs://{logs['bucket']}/{logs['prefix']}" == f"{storage}/compute-logs"
    # Runs that train queue on the tag the pipeline job carries.
    (limit,) = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    assert (limit["key"], limit["value"]) == (NODE_POOL_TAG, GPU_NODE_POOL)


def test_the_training_job_asks_kubernetes_for_a_gpu_node_and_registry_jobs_do_not() -> None:
    definitions = build_definitions()
    tags = definitions.resolve_job_def(PIPELINE_JOB_NAME).tags
    pod = json.loads(tags[K8S_CONFIG_TAG])
    assert set(pod) <= K8S_CONFIG_KEYS
    assert pod["pod_spec_config"]["node_selector"] == {"cloud.google.com/gke-nodepool": GPU_NODE_POOL}
    assert pod["container_config"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["container_config"]["volume_mounts"] == [{"name": "dshm", "mount_path": "/dev/shm"}]
    assert tags[NODE_POOL_TAG] == GPU_NODE_POOL
    others = [job for job in definitions.resolve_all_job_defs() if job.name != PIPELINE_JOB_NAME]
    assert others and all(K8S_CONFIG_TAG not in job.tags for job in others)


def _instructions() -> list[tuple[str, str]]:
    """The Dockerfile's (INSTRUCTION, arguments), continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in (K8S / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(maxsplit=1)[0].upper(), text.split(maxsplit=1)[1]) for text in logical]


def test_the_dockerfile_copies_files_that_are_in_its_build_context() -> None:
    ignored = [
        line.strip()
        for line in (K8S / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [arguments.split() for instruction, arguments in _instructions() if instruction == "COPY"]
    sources = [source for arguments in copies for source in arguments[:-1]]
    assert sources == [
        "pyproject.toml",
        "setup.py",
        "README.md",
        "workspace.yaml",
        "mlops_assets",
        "bento",
        "deployments",
    ]
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not any(fnmatch.fnmatch(source, pattern) for pattern in ignored), source
    # What the project needs at run time from its tree (settings.PROJECT_ROOT) is in the image.
    assert {"deployments", "bento", "workspace.yaml", "pyproject.toml"} <= set(sources)


def test_the_dockerfile_base_image_and_entry_point_match_the_project() -> None:
    instructions = dict(_instructions())
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert instructions["FROM"] == "python:3.11-slim" and python == ">=3.11,<3.12"
    command = json.loads(instructions["CMD"])
    assert command[:3] == ["dagster", "api", "grpc"]
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert options == {
        "--host": "0.0.0.0",
        "--port": instructions["EXPOSE"],
        "--module-name": "mlops_assets.definitions",
        "--location-name": "mlops_assets",
    }
    # Every option is one `dagster api grpc` has, and the module imports in a fresh interpreter.
    help_text = subprocess.run([DAGSTER, "api", "grpc", "--help"], capture_output=True, text=True, check=True).stdout
    assert all(f"  {option}" in help_text or f", {option}" in help_text for option in options), help_text
    imported = subprocess.run(
        [sys.executable, "-c", f"import {options['--module-name']}"], capture_output=True, text=True, timeout=300
    )
    assert imported.returncode == 0, imported.stderr


def test_the_dockerfile_installs_the_project_in_place_as_a_non_root_user() -> None:
    instructions = _instructions()
    run = next(arguments for instruction, arguments in instructions if instruction == "RUN")
    assert shlex.split(run)[:4] == ["pip", "install", "-e", "."]
    assert ("USER", "mlops") in instructions
