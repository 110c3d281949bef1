"""The Cloud Run target end to end: the official Admin API v2 client (REST) against the stand-in, which serves each
revision as a real BentoML server behind a traffic-splitting router."""

import os
from pathlib import Path

import httpx
import pytest
from dagster_gcp import GCSResource

from mlops_assets import settings
from mlops_assets.lib.deploy.release import CanaryCase, DeploymentError, Release, TrafficShare
from mlops_assets.lib.deploy.validation import parse_cloud_run
from mlops_assets.lib.serving.prediction_store import file_stage
from mlops_assets.resources.cloud_run_deployer import CloudRunDeployer
from mlops_assets.resources.prediction_logs import GcsPredictionLogs, LocalPredictionLogs
from mlops_assets_tests.cloud_run_standin import CloudRunStandIn
from mlops_assets_tests.service_fixtures import API_KEY, API_KEY_ENV, canary_cases, predicted_label
from mlops_assets_tests.test_deploy_local import ClientLoop

pytestmark = pytest.mark.e2e
PROJECT = "demo-project"
SERVICE_PATH = f"/v2/projects/{PROJECT}/locations/europe-west4/services/classifier"


def _environment(endpoint: str, **cloud_run):
    found = settings.environment_settings("local")
    stage = found.deployments.staging.model_copy(
        update={
            "target": "cloud_run",
            "cloud_run": parse_cloud_run(
                {
                    "service": "classifier",
                    "api_endpoint": endpoint,
                    "startup_timeout_s": 120,
                    "traffic_steps": [10, 100],
                    **cloud_run,
                },
                "staging",
                "test",
            ),
        }
    )
    deployments = found.deployments.model_copy(update={"staging": stage})
    serving = found.serving.model_copy(update={"api_key_env": API_KEY_ENV})
    return found.model_copy(update={"deployments": deployments, "serving": serving})


@pytest.fixture(scope="module")
def cloud(served_bento, tmp_path_factory, gcs_emulator):
    """The stand-in holding the serving key in its secrets, a deployer pointed at it with the environment's
    prediction logs on GCS (the emulator), and canary cases: the served bento's own answers for held-out images."""
    directory = tmp_path_factory.mktemp("cloud-canary")
    cases = canary_cases(served_bento, directory)
    standin = CloudRunStandIn(tmp_path_factory.mktemp("standin"), secrets={"mlops-api-key": API_KEY})
    endpoint = standin.start()
    previous = os.environ.get("MLOPS_GCP_PROJECT")
    os.environ["MLOPS_GCP_PROJECT"] = PROJECT
    logs = GcsPredictionLogs(url=f"gs://{gcs_emulator.new_bucket('cloud-logs')}/staging", gcs=GCSResource())
    deployer = CloudRunDeployer("staging", _environment(endpoint), prediction_logs=logs)
    try:
        yield standin, deployer, cases, served_bento, logs
    finally:
        deployer.undeploy()
        standin.close()
        if previous is None:
            os.environ.pop("MLOPS_GCP_PROJECT", None)
        else:
            os.environ["MLOPS_GCP_PROJECT"] = previous


def test_dry_run_prints_the_request_and_creates_nothing(cloud, capsys):
    standin, deployer, cases, served, _ = cloud
    record = deployer.deploy(Release("staging", 1, served.bento_tag, cases), dry_run=True)
    printed = capsys.readouterr().out
    assert printed.startswith("Cloud Run CreateService request (validate_only):\n")
    assert '"validateOnly": true' in printed
    assert '"accelerator": "nvidia-l4"' in printed
    assert '"nvidia.com/gpu": "1"' in printed
    assert '"secret": "mlops-api-key"' in printed
    name, version = served.bento_tag.split(":")
    assert f'"image": "europe-west4-docker.pkg.dev/{PROJECT}/mlops-bentos/{name}:{version}"' in printed
    assert (record.revision, record.url, record.traffic) == ("v1", "", (TrafficShare("v1", 100),))
    assert deployer.status() is None
    assert standin.services == {}


def test_rollout_failures_pinning_rollback(cloud):
    standin, deployer, cases, served, logs = cloud
    png = Path(cases[0].image_path).read_bytes()

    first = deployer.deploy(Release("staging", 1, served.bento_tag, cases))
    assert (first.target, first.revision, first.model_version, first.bento_tag) == (
        "cloud_run",
        "v1",
        1,
        served.bento_tag,
    )
    assert first.traffic == (TrafficShare("v1", 100),)
    assert first.revision_urls == {"v1": f"{first.url}/v1"}
    assert (first.canary.sent, first.canary.matched, first.previous_revision) == (4, 4, None)
    assert predicted_label(first.url, png) == cases[0].expected_label
    # The key reached the revision from the stand-in's Secret Manager: without it the revision refuses.
    unauthenticated = httpx.post(f"{first.url}/v1/predict", files={"images": ("x.png", png, "image/png")}, timeout=60)
    assert unauthenticated.status_code == 401

    # v2: tagged at 0 %, canary at its tag URL, then 10 %, then 100 %; a client loop on the main URL sees no failure.
    with ClientLoop(first.url, png) as loop:
        second = deployer.deploy(Release("staging", 2, served.bento_tag, cases))
    assert set(loop.statuses) == {200}, loop.statuses
    assert standin.traffic_sent[-3:] == [
        [("v1", 100), ("v2", 0)],
        [("v2", 10), ("v1", 90)],
        [("v2", 100), ("v1", 0)],
    ]
    assert (second.revision, second.previous_revision, second.traffic) == ("v2", "v1", (TrafficShare("v2", 100),))
    assert second.revision_urls == {"v2": f"{first.url}/v2", "v1": f"{first.url}/v1"}
    # Pinning: v1 keeps answering at its tag URL after v2 took the main URL.
    assert predicted_label(f"{first.url}/v1", png) == cases[0].expected_label

    # A revision that never becomes ready: refused with Cloud Run's reason; v2 keeps serving without a failed request.
    with ClientLoop(first.url, png) as loop, pytest.raises(DeploymentError) as refused:
        deployer.deploy(Release("staging", 3, "image-classifier-service:no-such-bento", cases))
    assert set(loop.statuses) == {200}, loop.statuses
    message = str(refused.value)
    assert message.startswith(
        "Cloud Run revision v3 did not become ready: Revision 'classifier-v3' is not ready and cannot serve traffic."
    )
    assert "v2 keeps serving. Fix the bento or its settings, then deploy again." in message
    after_failure = deployer.status()
    assert (after_failure.revision, after_failure.traffic) == ("v2", (TrafficShare("v2", 100),))
    assert set(after_failure.revision_urls) == {"v1", "v2"}

    # A canary answering wrongly: refused before the revision gets any main-URL traffic; its tag is removed again.
    wrong = tuple(CanaryCase(case.image_path, "not-a-label") for case in cases)
    with pytest.raises(DeploymentError) as refused:
        deployer.deploy(Release("staging", 4, served.bento_tag, wrong))
    assert str(refused.value).startswith(f"Canary of v4 at {first.url}/v4 failed (0/4 answers matched: ")
    assert "v2 keeps serving" in str(refused.value)
    after_canary = deployer.status()
    assert (after_canary.revision, set(after_canary.revision_urls)) == ("v2", {"v1", "v2"})
    assert httpx.get(f"{first.url}/v4/readyz", timeout=10).status_code != 200

    # Rollback: the main URL goes back to v1; v2 stays pinned.
    rolled = deployer.rollback()
    assert (rolled.revision, rolled.model_version, rolled.previous_revision) == ("v1", 1, "v2")
    assert rolled.traffic == (TrafficShare("v1", 100),)
    assert predicted_label(f"{first.url}/v2", png) == cases[0].expected_label
    assert deployer.status().revision == "v1"
    with pytest.raises(DeploymentError) as nothing_before:
        deployer.rollback()
    assert str(nothing_before.value).startswith("staging has no release before v1 to roll back to")

    deployer.undeploy()
    assert deployer.status() is None
    assert ("DELETE", SERVICE_PATH) in standin.requests
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{first.url}/-/routes", timeout=5)

    # Every revision was told the environment's GCS prediction logs and its stage: their files (uploaded as the
    # servers stopped) are named for staging, and every record says staging.
    store = logs.store()
    names = store.names()
    assert names, "the revisions uploaded no prediction log"
    assert {file_stage(name) for name in names} == {"staging"}
    assert all(".staging." in name for name in names), names
    logged = [record for name in names for record in store.read(name)]
    assert logged and {record["stage"] for record in logged} == {"staging"}


def test_a_cloud_run_stage_with_prediction_logs_in_a_local_folder_is_refused(cloud, tmp_path):
    standin, cloud_deployer, cases, served, _ = cloud
    folder = tmp_path / "predictions"
    deployer = CloudRunDeployer(
        "staging",
        _environment(cloud_deployer.settings.api_endpoint),
        prediction_logs=LocalPredictionLogs(root=str(folder)),
    )
    before = dict(standin.services)
    with pytest.raises(DeploymentError) as refused:
        deployer.deploy(Release("staging", 1, served.bento_tag, cases))
    assert str(refused.value) == (
        f"deployments.staging targets Cloud Run, but local keeps prediction logs in a folder of this machine "
        f"({folder}), which a Cloud Run revision cannot write to; set storage.backend: gcs in deployments/local.yaml "
        "(prediction logs then go to <storage URL>/predictions/) or deploy staging with target: local. Nothing was "
        "deployed."
    )
    assert standin.services == before
