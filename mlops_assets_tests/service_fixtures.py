"""A real bento of a quickly trained CNN, served by a real BentoML server on loopback, shared by the service tests."""

import os
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mlops_assets import settings
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets.lib.deploy.release import CanaryCase
from mlops_assets.lib.models.plugins.base import TrainSettings
from mlops_assets.lib.models.training import train_model
from mlops_assets.lib.serving.buffered_metrics import FLUSH_INTERVAL_S

API_KEY_ENV = "MLOPS_TEST_SERVICE_API_KEY"
API_KEY = "test-key-4f1c9a"


@dataclass(frozen=True)
class ServedBento:
    url: str
    model_tag: str
    bento_tag: str
    home: Path
    samples: tuple[tuple[str, bytes], ...]  # (true label, PNG bytes) from the test split

    def client(self, authenticated: bool = True, timeout: float = 30) -> httpx.Client:
        headers = {"Authorization": f"Bearer {API_KEY}"} if authenticated else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)


def metric_total(metrics: str, series: str, **labels: str) -> float:
    """Sum of a Prometheus series over its label sets (one per worker process and model version), optionally only
    those with the given label values."""
    wanted = [f'{name}="{value}"' for name, value in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.split("{")[0].split(" ")[0] == series and all(label in line for label in wanted)
    )


def settled_metrics(client: httpx.Client) -> str:
    """The server's /metrics once every update made so far is in it. Workers write their metric updates in batches
    every FLUSH_INTERVAL_S (`buffered_metrics`), so this reads until two reads a few intervals apart agree (reading
    /metrics changes no series), for at most 30 s; a server that never settles is an error."""
    deadline = time.monotonic() + 30
    previous = client.get("/metrics").text
    while True:
        time.sleep(3 * FLUSH_INTERVAL_S)
        current = client.get("/metrics").text
        if current == previous:
            return current
        if time.monotonic() > deadline:
            raise AssertionError("the server's /metrics kept changing for 30 s with no request in flight")
        previous = current


def serve_in_own_home(bento_tag: str, home: Path) -> tuple[str, int]:
    """Start a second server for `bento_tag` (stop it with `stop_process_group(pid)`); returns its URL and pid.

    A starting BentoML server empties $BENTOML_HOME/prometheus_multiproc_dir, which would blank the metrics of the
    shared server the other service tests read, so this one gets its own `home`, reaching the same store by links.
    """
    from mlops_assets.resources.local_deployer import start_bento_server
    from mlops_assets_tests.conftest import free_port

    store = settings.bentoml_home()
    (home / "bentoml").mkdir(parents=True)
    for kind in ("bentos", "models"):
        (home / "bentoml" / kind).symlink_to(store / kind, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("MLOPS_HOME", "DAGSTER_HOME", "BENTOML_HOME"):
            patch.setenv(variable, os.environ.get(variable, ""))  # restored on exit, whatever the server start sets
        patch.setenv("MLOPS_HOME", str(home))
        port = free_port()
        process = start_bento_server(bento_tag, "127.0.0.1", port, home / "logs" / "server.log", 120)
    return f"http://127.0.0.1:{port}", process.pid


@pytest.fixture(scope="session")
def served_bento(digits_subset: Path, isolated_home: Path) -> ServedBento:
    settings.export_environment()
    from mlops_assets.packaging import build_service_bento, store_model
    from mlops_assets.resources.local_deployer import deploy_local, stop_local
    from mlops_assets_tests.conftest import free_port

    manifest = scan_dataset(digits_subset)
    data = build_validated_dataset(manifest, GeometryConfig(), settings.artifacts_dir() / "service-data")
    trained = train_model(
        data, "cnn", {}, TrainSettings(epochs=3, device="cpu"), settings.artifacts_dir() / "service-model"
    )
    model_tag = store_model(
        Path(trained.directory),
        "image-classifier",
        trained.weights_sha256[:20],
        labels={"plugin": "cnn"},
        metadata={"data_version": data.data_version, "val_accuracy": trained.final_epoch["val_accuracy"]},
    )
    serving = {
        "max_batch_size": 16,
        # Generous: the tests share two cores with other work, and a shed request (503) would fail them.
        "max_latency_ms": 5000,
        "api_key_env": API_KEY_ENV,
        # Every request is logged, so the tests can read back exactly what they sent.
        "prediction_log_sample_rate": 1.0,
    }
    artifact, _ = build_service_bento(model_tag, labels={"purpose": "service-tests"}, serving=serving)
    os.environ[API_KEY_ENV] = API_KEY
    deployment = deploy_local(artifact.bento_tag, port=free_port())
    samples = tuple(
        (entry.label, manifest.absolute_path(entry).read_bytes()) for entry in manifest.entries if entry.split == "test"
    )
    try:
        yield ServedBento(deployment.url, model_tag, artifact.bento_tag, settings.mlops_home(), samples[:32])
    finally:
        from mlops_assets.lib.deploy.supervisor import group_alive, stop_server

        stop_local()  # whatever the home's state file records now
        # And this fixture's own server, even if a test replaced or removed the state file meanwhile: a session
        # fixture's server must never outlive the test run.
        if group_alive(deployment.server()):
            stop_server(deployment.server(), grace_s=15.0)
        os.environ.pop(API_KEY_ENV, None)


def predicted_label(url: str, png: bytes) -> str:
    """The label a service at `url` predicts for one PNG, sent with the test key; asserts a 200 answer."""
    answer = httpx.post(
        f"{url}/predict",
        files={"images": ("x.png", png, "image/png")},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["predictions"][0]["label"])


def canary_cases(served: ServedBento, directory: Path, count: int = 4) -> tuple[CanaryCase, ...]:
    """Canary cases from the first `count` held-out samples: each image written under `directory` with the label
    the served bento itself gives it."""
    cases = []
    with served.client() as client:
        for index, (_, png) in enumerate(served.samples[:count]):
            path = directory / f"{index}.png"
            path.write_bytes(png)
            answer = client.post("/predict", files={"images": (path.name, png, "image/png")}).json()
            cases.append(CanaryCase(str(path), str(answer["predictions"][0]["label"])))
    return tuple(cases)
