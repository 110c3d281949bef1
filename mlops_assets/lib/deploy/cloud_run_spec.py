"""The Cloud Run Admin API v2 `Service` a release becomes, built with the official client's types."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from google.cloud import run_v2
from google.protobuf import duration_pb2

from mlops_assets.lib.deploy.release import DeploymentError, Release
from mlops_assets.lib.deploy.validation import CloudRunSettings, startup_probe_failures

# The port BentoML serves on inside its container (`bentoml containerize` images listen there).
CONTAINER_PORT = 3000
READINESS_PATH = "/readyz"
# Seconds between startup probes; their count covers the settings' cold-start budget.
PROBE_PERIOD_S = 10
# Service annotation holding the releases that have gone live, oldest first (a rollback walks back along it).
RELEASES_ANNOTATION = "mlops-assets/releases"
REVISION_TYPE = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION


@dataclass(frozen=True)
class LiveRelease:
    """A release that went live in the service: its revision tag (`v12`), model version and bento tag."""

    revision: str
    model_version: int
    bento_tag: str


def service_path(project: str, settings: CloudRunSettings) -> str:
    """`projects/<project>/locations/<region>/services/<service>`."""
    return run_v2.ServicesClient.service_path(project, settings.region, settings.service)


def image_uri(project: str, settings: CloudRunSettings, bento_tag: str) -> str:
    """The Artifact Registry image of a bento: `<region>-docker.pkg.dev/<project>/<repository>/<name>:<version>`."""
    name, _, version = bento_tag.partition(":")
    if not version:
        raise DeploymentError(f"Bento tag {bento_tag!r} has no version: deploy a built bento (name:version).")
    return f"{settings.region}-docker.pkg.dev/{project}/{settings.repository}/{name}:{version}"


def revision_name(settings: CloudRunSettings, release: Release) -> str:
    """The Cloud Run revision of a release: `<service>-v<model version>` (revision names start with the service's)."""
    return f"{settings.service}-{release.revision}"


def _container(
    project: str, settings: CloudRunSettings, release: Release, api_key_env: str, variables: Mapping[str, str]
) -> run_v2.Container:
    limits = {"cpu": f"{settings.cpu:g}", "memory": settings.memory}
    if settings.accelerator is not None:
        limits["nvidia.com/gpu"] = "1"
    env = []
    if settings.api_key_secret is not None:
        secret = run_v2.SecretKeySelector(secret=settings.api_key_secret, version=settings.api_key_secret_version)
        env.append(run_v2.EnvVar(name=api_key_env, value_source=run_v2.EnvVarSource(secret_key_ref=secret)))
    # Plain values (where the prediction log goes, the deployment stage), sorted so equal releases build equal specs.
    env += [run_v2.EnvVar(name=name, value=value) for name, value in sorted(variables.items())]
    return run_v2.Container(
        name="bento",
        image=image_uri(project, settings, release.bento_tag),
        ports=[run_v2.ContainerPort(name="http1", container_port=CONTAINER_PORT)],
        env=env,
        # GPUs need instance-based billing: CPU stays allocated between requests (cpu_idle False).
        resources=run_v2.ResourceRequirements(
            limits=limits, cpu_idle=False, startup_cpu_boost=settings.startup_cpu_boost
        ),
        startup_probe=run_v2.Probe(
            http_get=run_v2.HTTPGetAction(path=READINESS_PATH, port=CONTAINER_PORT),
            period_seconds=PROBE_PERIOD_S,
            timeout_seconds=5,
            failure_threshold=startup_probe_failures(settings, PROBE_PERIOD_S),
        ),
    )


def revision_template(
    project: str,
    settings: CloudRunSettings,
    release: Release,
    api_key_env: str,
    variables: Mapping[str, str] | None = None,
) -> run_v2.RevisionTemplate:
    """The revision a release becomes: the bento's image on the configured GPU, CPU, memory and scaling, its
    container started with the environment `variables` (the prediction log's place and the stage) and the API key
    from Secret Manager."""
    template = run_v2.RevisionTemplate(
        revision=revision_name(settings, release),
        labels={"model-version": str(release.model_version)},
        scaling=run_v2.RevisionScaling(
            min_instance_count=settings.min_instances, max_instance_count=settings.max_instances
        ),
        max_instance_request_concurrency=settings.concurrency,
        containers=[_container(project, settings, release, api_key_env, variables or {})],
        timeout=duration_pb2.Duration(seconds=300),
    )
    if settings.service_account is not None:
        template.service_account = settings.service_account
    if settings.accelerator is not None:
        template.node_selector = run_v2.NodeSelector(accelerator=settings.accelerator)
        template.gpu_zonal_redundancy_disabled = settings.gpu_zonal_redundancy_disabled
    return template


def traffic(
    settings: CloudRunSettings, shares: Sequence[tuple[str, int]], tagged: Sequence[str]
) -> list[run_v2.TrafficTarget]:
    """Traffic targets: each `(revision tag, percent)` of `shares`, then every other revision in `tagged` at 0 % so
    its tag URL keeps answering (pinning). Revisions are named by their tag (`v12`)."""
    targets = [
        run_v2.TrafficTarget(type_=REVISION_TYPE, revision=f"{settings.service}-{tag}", percent=percent, tag=tag)
        for tag, percent in shares
    ]
    listed = {tag for tag, _ in shares}
    targets += [
        run_v2.TrafficTarget(type_=REVISION_TYPE, revision=f"{settings.service}-{tag}", percent=0, tag=tag)
        for tag in tagged
        if tag not in listed
    ]
    return targets


def releases_annotation(releases: Sequence[LiveRelease]) -> str:
    return json.dumps([[item.revision, item.model_version, item.bento_tag] for item in releases])


def read_releases(service: run_v2.Service) -> list[LiveRelease]:
    """The releases recorded on the service (oldest first); [] when it holds none."""
    text = service.annotations.get(RELEASES_ANNOTATION)
    if not text:
        return []
    try:
        return [LiveRelease(str(tag), int(version), str(bento)) for tag, version, bento in json.loads(text)]
    except (ValueError, TypeError) as error:
        raise DeploymentError(
            f"Service {service.name}: annotation {RELEASES_ANNOTATION} is not what this project writes ({error}); "
            "fix or remove it in the Cloud Run console, then deploy again."
        ) from error


def build_service(
    project: str,
    settings: CloudRunSettings,
    release: Release,
    *,
    api_key_env: str,
    shares: Sequence[tuple[str, int]],
    tagged: Sequence[str],
    releases: Sequence[LiveRelease],
    variables: Mapping[str, str] | None = None,
) -> run_v2.Service:
    """The whole service for one step of a rollout: the release's revision template (its container started with
    `variables`), the traffic split `shares` (revision tag, percent) plus 0 % targets for the other `tagged`
    revisions, and the live `releases` recorded."""
    return run_v2.Service(
        name=service_path(project, settings),
        labels={"managed-by": "mlops-assets"},
        annotations={RELEASES_ANNOTATION: releases_annotation(releases)},
        ingress=run_v2.IngressTraffic.INGRESS_TRAFFIC_ALL,
        template=revision_template(project, settings, release, api_key_env, variables),
        traffic=traffic(settings, shares, tagged),
    )
