"""The Cloud Run image: a bento whose Python packages name the CUDA build of torch, chosen by the deployment config."""

from pathlib import Path

import pytest
import yaml

from mlops_assets import settings
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.packaging import BENTOFILES, bento_target, build_service_bento, merge_python_packages
from mlops_assets_tests.service_fixtures import API_KEY_ENV

CUDA_TORCH = "torch==2.13.0+cu126"
CUDA_INDEX = "https://download.pytorch.org/whl/cu126"


def _bentofile(target: str) -> dict:
    return yaml.safe_load((settings.PROJECT_ROOT / BENTOFILES[target]).read_text())


def test_the_cloud_run_bentofile_differs_from_the_local_one_only_by_the_cuda_build():
    local, cloud = _bentofile("local"), _bentofile("cloud_run")
    assert local["python"]["packages"][0] == "torch==2.13.0"
    assert "extra_index_url" not in local["python"] and "envs" not in local and "docker" not in local
    assert cloud["python"]["packages"] == [CUDA_TORCH, *local["python"]["packages"][1:]]
    assert cloud["python"]["extra_index_url"] == [CUDA_INDEX]
    assert cloud["docker"] == {"distro": "debian", "python_version": "3.11"}
    assert cloud["envs"] == [{"name": "UV_INDEX_STRATEGY", "value": "unsafe-best-match"}]
    unchanged = {key: value for key, value in cloud.items() if key not in ("python", "docker", "envs")}
    assert unchanged == {key: value for key, value in local.items() if key != "python"}
    cloud_python = {key: value for key, value in cloud["python"].items() if key not in ("packages", "extra_index_url")}
    assert cloud_python == {key: value for key, value in local["python"].items() if key != "packages"}


def test_the_cnn_plugins_torch_pin_is_satisfied_by_the_cuda_build_and_a_different_release_is_refused():
    packages = _bentofile("cloud_run")["python"]["packages"]
    label = BENTOFILES["cloud_run"]
    assert merge_python_packages(packages, ["torch==2.13.0"], "cnn", label) == packages
    assert merge_python_packages(packages, ["torch>=2.13,<2.14"], "cnn", label) == packages
    with pytest.raises(MLOpsError) as refused:
        merge_python_packages(packages, ["torch==2.12.0"], "old-torch", label)
    assert str(refused.value) == (
        "model plug-in 'old-torch' requires 'torch==2.12.0', which conflicts with 'torch==2.13.0+cu126' from "
        "bento/bentofile.cloud_run.yaml. A bento installs one version of each package: make the two pins agree."
    )
    # Another build of the same release is no exact match for a plug-in that names its own build.
    with pytest.raises(MLOpsError, match=r"'torch==2.13.0\+cpu', which conflicts with 'torch==2.13.0\+cu126'"):
        merge_python_packages(packages, ["torch==2.13.0+cpu"], "cpu-torch", label)


@pytest.mark.parametrize(("environment", "target"), [("local", "local"), ("staging", "cloud_run")])
def test_the_target_follows_the_environments_deployment_stages(monkeypatch, environment, target):
    monkeypatch.setenv("MLOPS_ENV", environment)
    stages = settings.environment_settings().deployments
    assert {stages.staging.target, stages.production.target} == {target}
    assert bento_target() == target


def test_an_unknown_target_is_refused_before_anything_is_built(served_bento):
    with pytest.raises(MLOpsError) as refused:
        build_service_bento(served_bento.model_tag, labels={}, serving={"api_key_env": API_KEY_ENV}, target="gke")
    assert str(refused.value) == "Unknown bento target 'gke': use one of local, cloud_run."


def test_a_bentofile_with_a_yaml_mistake_is_named_with_where_it_is_broken(tmp_path, monkeypatch):
    broken = tmp_path / "bentofile.yaml"
    broken.write_text('service: "bento.service:ImageClassifier"\ninclude: ["bento/service.py"\n')
    monkeypatch.setitem(BENTOFILES, "edited", str(broken))
    with pytest.raises(MLOpsError) as refused:
        build_service_bento("model:v1", labels={}, serving={"api_key_env": API_KEY_ENV}, target="edited")
    assert str(refused.value) == (
        f"{broken}: not valid YAML (line 3, column 1: expected ',' or ']', but got '<stream end>')"
    )


@pytest.fixture(scope="module")
def cloud_run_bento(served_bento):
    """A real bento of the sample CNN built from the Cloud Run bentofile (nothing is installed: lock_packages false)."""
    artifact, _ = build_service_bento(
        served_bento.model_tag,
        labels={"purpose": "cloud-run-image"},
        serving={"api_key_env": API_KEY_ENV},
        plugin="cnn",
        target="cloud_run",
    )
    return artifact


def _requirements(bento_path: str) -> list[str]:
    lines = (Path(bento_path) / "env" / "python" / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_cloud_run_bento_installs_the_cuda_torch_from_its_index(cloud_run_bento, served_bento):
    import bentoml

    requirements = _requirements(cloud_run_bento.bento_path)
    assert f"--extra-index-url {CUDA_INDEX}" in requirements
    assert [line for line in requirements if line.startswith("torch")] == [CUDA_TORCH]
    assert {"numpy>=1.26,<3", "pillow>=11,<14", "multipart>=2.0.1,<3", "google-cloud-storage>=3.17,<4"} <= set(
        requirements
    )
    info = bentoml.bentos.get(cloud_run_bento.bento_tag).info
    local_bento = bentoml.bentos.get(served_bento.bento_tag)
    # The bentofile's variable first, then the service's own (`envs=` in bento/service.py), as in the local bento.
    envs = [(env.name, env.value, env.stage) for env in info.envs]
    local_envs = [(env.name, env.value, env.stage) for env in local_bento.info.envs]
    assert envs == [("UV_INDEX_STRATEGY", "unsafe-best-match", "all"), *local_envs]
    assert ("OTEL_SDK_DISABLED", "true", "all") in local_envs
    assert info.args["model_tag"] == served_bento.model_tag
    # The local bento of the same model is untouched: CPU torch pin, no extra index.
    local = _requirements(local_bento.path)
    assert [line for line in local if line.startswith("torch")] == ["torch==2.13.0"]
    assert not [line for line in local if "index-url" in line]


def test_bentomls_dockerfile_installs_the_requirements_on_python_slim_with_the_model(cloud_run_bento, served_bento):
    import bentoml
    from bentoml._internal.container import construct_containerfile

    bento = bentoml.bentos.get(cloud_run_bento.bento_tag)
    # What `bentoml containerize` hands the container engine: the context folder and its Dockerfile.
    with construct_containerfile(bento, enable_buildkit=False) as (context, dockerfile_path):
        dockerfile = Path(dockerfile_path).read_text()
        model_name, _, model_version = served_bento.model_tag.partition(":")
        model_copied = (Path(context) / "models" / model_name / model_version / "model.yaml").is_file()
        context_models = sorted(str(path.relative_to(context)) for path in Path(context).glob("models/*/*"))
        context_requirements = (Path(context) / "env" / "python" / "requirements.txt").read_text()
    lines = [line.strip() for line in dockerfile.splitlines()]
    assert lines[lines.index("# Block SETUP_BENTO_BASE_IMAGE") + 1] == "FROM python:3.11-slim AS base-container"
    install = [line for line in lines if "pip install -r $BENTO_PATH/env/python/requirements.txt" in line]
    assert install == ["fi; uv --directory $INSTALL_ROOT pip install -r $BENTO_PATH/env/python/requirements.txt"]
    # The index strategy is in the environment before the install step runs.
    assert lines.index("ENV UV_INDEX_STRATEGY=$UV_INDEX_STRATEGY") < lines.index(install[0])
    assert "ARG UV_INDEX_STRATEGY=unsafe-best-match" in lines
    assert [line for line in lines if line][-1] == 'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]'
    assert "EXPOSE 3000" in lines
    assert model_copied, (served_bento.model_tag, context_models)
    assert CUDA_TORCH in context_requirements.splitlines()
