"""The Cloud Run service a release becomes, the checks before sending it, and the cost plan of the shipped configs."""

from pathlib import Path

import pytest
import yaml

from mlops_assets import settings
from mlops_assets.lib.deploy.cloud_run_spec import LiveRelease, build_service, read_releases
from mlops_assets.lib.deploy.cost import plan_text
from mlops_assets.lib.deploy.release import Release
from mlops_assets.lib.deploy.validation import CloudRunSettings, parse_cloud_run
from mlops_assets.lib.environment_settings import load_environment_settings
from mlops_assets.lib.settings_validation import ConfigError

BASE = {"service": "classifier", "region": "europe-west4"}


def _problem(**changes) -> str:
    with pytest.raises(ConfigError) as refused:
        parse_cloud_run({**BASE, **changes}, "staging", "deployments/staging.yaml")
    return str(refused.value)


def test_service_carries_gpu_resources_probe_secret_and_tagged_traffic():
    settings_ = parse_cloud_run(
        {**BASE, "startup_timeout_s": 300, "min_instances": 1, "max_instances": 1}, "staging", "x"
    )
    release = Release("staging", 12, "image-classifier-service:abc123")
    live = [LiveRelease("v11", 11, "image-classifier-service:old")]
    service = build_service(
        "demo",
        settings_,
        release,
        api_key_env="MLOPS_API_KEY",
        shares=[("v11", 100), ("v12", 0)],
        tagged=["v10", "v11"],
        releases=live,
        variables={"MLOPS_PREDICTIONS_URL": "gs://logs/staging/predictions", "MLOPS_DEPLOYMENT_STAGE": "staging"},
    )
    template = service.template
    container = template.containers[0]
    assert service.name == "projects/demo/locations/europe-west4/services/classifier"
    assert template.revision == "classifier-v12"
    assert template.node_selector.accelerator == "nvidia-l4"
    assert template.gpu_zonal_redundancy_disabled is True
    assert template.max_instance_request_concurrency == 64
    assert (template.scaling.min_instance_count, template.scaling.max_instance_count) == (1, 1)
    assert container.image == "europe-west4-docker.pkg.dev/demo/mlops-bentos/image-classifier-service:abc123"
    assert dict(container.resources.limits) == {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert (container.resources.cpu_idle, container.resources.startup_cpu_boost) == (False, True)
    probe = container.startup_probe
    assert (probe.http_get.path, probe.http_get.port, probe.period_seconds, probe.failure_threshold) == (
        "/readyz",
        3000,
        10,
        30,
    )
    assert container.env[0].name == "MLOPS_API_KEY"
    assert (
        container.env[0].value_source.secret_key_ref.secret,
        container.env[0].value_source.secret_key_ref.version,
    ) == ("mlops-api-key", "latest")
    # The revision logs its predictions to the environment's bucket, under its stage.
    assert [(variable.name, variable.value) for variable in container.env[1:]] == [
        ("MLOPS_DEPLOYMENT_STAGE", "staging"),
        ("MLOPS_PREDICTIONS_URL", "gs://logs/staging/predictions"),
    ]
    assert [(t.revision, t.percent, t.tag) for t in service.traffic] == [
        ("classifier-v11", 100, "v11"),
        ("classifier-v12", 0, "v12"),
        ("classifier-v10", 0, "v10"),
    ]
    assert read_releases(service) == live


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"cpu": 2.0, "memory": "8Gi"}, "deployments.staging.cloud_run.cpu = 2: nvidia-l4 needs 4 to 8 vCPU"),
        ({"memory": "8Gi"}, "deployments.staging.cloud_run.memory = '8Gi': nvidia-l4 needs 16Gi to 32Gi"),
        ({"region": "us-west1"}, "deployments.staging.cloud_run.region = 'us-west1': nvidia-l4 is offered in "),
        ({"max_instances": 3, "gpu_quota": 2}, "deployments.staging.cloud_run.max_instances = 3: above gpu_quota = 2"),
        ({"accelerator": "nvidia-t4"}, "deployments.staging.cloud_run.accelerator = 'nvidia-t4': expected one of "),
        (
            {"accelerator": None, "cpu": 1.0, "memory": "12Gi"},
            "deployments.staging.cloud_run.cpu = 1: memory 12Gi needs at least 4 vCPU",
        ),
        (
            {"accelerator": None, "cpu": 3.0, "memory": "2Gi"},
            "deployments.staging.cloud_run.cpu = 3: expected one of 1, 2, 4, 6, 8",
        ),
        ({"memory": "16GB"}, "deployments.staging.cloud_run.memory = '16GB': expected a size such as '16Gi'"),
        ({"traffic_steps": [50, 10]}, "deployments.staging.cloud_run.traffic_steps = [50, 10]: expected increasing"),
        (
            {"min_instances": 2, "max_instances": 1},
            "deployments.staging.cloud_run.min_instances = 2: above max_instances = 1",
        ),
        ({"gpus": 2}, "deployments.staging.cloud_run.gpus = 2: unknown setting"),
    ],
)
def test_invalid_settings_are_refused_naming_the_setting(changes, expected):
    message = _problem(**changes)
    assert message.startswith("deployments/staging.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_a_bad_cloud_run_section_fails_the_environment_file(tmp_path: Path):
    content = yaml.safe_load(settings.environment_file("staging").read_text())
    content["deployments"]["staging"]["cloud_run"]["memory"] = "8Gi"
    path = tmp_path / "staging.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as refused:
        load_environment_settings(path, "staging")
    assert str(refused.value) == (f"{path}: deployments.staging.cloud_run.memory = '8Gi': nvidia-l4 needs 16Gi to 32Gi")
    content["deployments"]["staging"]["cloud_run"] = None
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as missing:
        load_environment_settings(path, "staging")
    assert str(missing.value) == (
        f"{path}: deployments.staging.cloud_run: missing (target cloud_run needs the Cloud Run service settings)"
    )


@pytest.mark.parametrize("environment", ["staging", "production"])
def test_cost_plan_of_the_shipped_configs(environment):
    found = load_environment_settings(settings.environment_file(environment), environment)
    staging = plan_text(found.deployments.staging, "staging")
    production = plan_text(found.deployments.production, "production")
    # staging: 4 vCPU, 16 GiB, L4 without zonal redundancy, scaled to zero; 2,000 x 0.05 s a day for 30 days.
    hourly = 4 * 0.000018 + 16 * 0.000002 + 0.0001867
    assert staging.splitlines()[0] == "staging: Cloud Run service image-classifier-staging in europe-west4"
    assert f"${hourly * 3600:.4f}/hour" in staging
    assert f"estimated monthly cost: ${hourly * 2000 * 30 * 0.05:,.2f} " in staging
    # production: 8 vCPU, 32 GiB, L4 with zonal redundancy, one instance all month (the load fits in it).
    hourly = 8 * 0.000018 + 32 * 0.000002 + 0.0002909
    assert "instance-hours/month: 720.0 always on + 0.0 for the load" in production
    assert f"estimated monthly cost: ${hourly * 720 * 3600:,.2f} " in production
    assert "prices: https://cloud.google.com/run/pricing as recorded 2026-11-30 for europe-west4" in production


def test_local_stage_plan_has_no_cloud_cost():
    found = settings.environment_settings("local")
    assert plan_text(found.deployments.staging, "staging") == (
        "staging: target local: served on this machine, no Cloud Run cost."
    )


def test_defaults_are_an_l4_service():
    defaults = CloudRunSettings(service="classifier")
    assert (defaults.accelerator, defaults.cpu, defaults.memory, defaults.region) == (
        "nvidia-l4",
        4.0,
        "16Gi",
        "europe-west4",
    )
