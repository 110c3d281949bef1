"""Acceptance: a served model, in-distribution traffic (no drift), then inverted images (severe drift): the check
fails, an alert reaches a webhook, and the drift sensor requests a retraining run."""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pytest
from PIL import Image, ImageOps

from mlops_assets.lib.data.sample_data import export_digits
from mlops_assets.lib.monitoring.alerts import read_alerts
from mlops_assets_tests.conftest import free_port
from mlops_assets_tests.monitoring_fixtures import webhook_receiver

pytestmark = pytest.mark.e2e
MLOPS = str(Path(sys.executable).parent / "mlops")
# Requests of this many images; the service logs a sampled request's every image (sample rate 0.1 in local.yaml), so
# 400 requests log ~640 images, far above monitoring.min_predictions (200) whatever the draw.
IMAGES_PER_REQUEST = 16
REQUESTS = 400


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "MLOPS_HOME": str(home), **extra}
    for key in ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME", "MLOPS_ENV", "MLOPS_API_KEY"):
        env.pop(key, None)
    return env


def _mlops(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLOPS, *args], env=_env(home, **extra), capture_output=True, text=True, timeout=900)


@dataclass(frozen=True)
class Digits:
    """A training dataset and in-distribution traffic the model never saw, drawn alike from the bundled digits."""

    dataset: Path
    unseen: list[bytes]


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Digits:
    """The bundled digits split in two by index parity: the even ones are the dataset (~900 images; its held-out
    ~270 are the baseline's answers), the odd ones the traffic (~900 images).

    Not the shared 40-per-class subset and its own held-out images: ~120 distinct images as traffic differ from the
    training images by 0.2-0.3 standard deviations in brightness on their own, at the drift threshold (0.3); nor
    that subset against the rest of the digits: the first 40 of each class differ from the rest (contrast by 0.2
    standard deviations; even against odd: 0.08), and the model's confidence on the rest came near 0.3 too."""
    every_digit = export_digits(tmp_path_factory.mktemp("data") / "digits")
    dataset = every_digit.parent / "even"
    unseen = []
    for path in sorted(every_digit.rglob("*.png")):
        if int(path.stem) % 2 == 0:
            (dataset / path.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dataset / path.parent.name / path.name)
        else:
            unseen.append(path.read_bytes())
    return Digits(dataset, unseen)


def _inverted(png: bytes) -> bytes:
    buffer = io.BytesIO()
    ImageOps.invert(Image.open(io.BytesIO(png)).convert("L")).save(buffer, format="PNG")
    return buffer.getvalue()


def _send(url: str, images: list[bytes], seed: int) -> None:
    chooser = random.Random(seed)
    with httpx.Client(base_url=url, timeout=60) as client:
        for _ in range(REQUESTS):
            batch = [("images", (f"{i}.png", chooser.choice(images), "image/png")) for i in range(IMAGES_PER_REQUEST)]
            response = client.post("/predict", files=batch)
            assert response.status_code == 200, response.text


def _logged(home: Path) -> int:
    """Records in the prediction log once the writer has flushed everything (no growth for 2 s)."""
    previous, stable_since = -1, time.monotonic()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        count = sum(path.read_text().count("\n") for path in (home / "predictions").glob("*.jsonl"))
        if count != previous:
            previous, stable_since = count, time.monotonic()
        elif time.monotonic() - stable_since >= 2:
            return count
        time.sleep(0.25)
    raise AssertionError("the prediction log kept growing for a minute after the traffic stopped")


def test_drift_is_detected_alerted_and_answered_with_a_retraining_request(tmp_path: Path, digits: Digits) -> None:
    home = tmp_path / "home"
    config = tmp_path / "run.yaml"
    config.write_text("ops: {trained_model: {config: {epochs: 3}}}\n")
    built = _mlops(home, "run", "--dataset", str(digits.dataset), "--config", str(config))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    assert "promotion:     version 1 is in production in local" in built.stdout
    assert len(list((home / "artifacts" / "monitoring_baseline").glob("*/baseline.json"))) == 1

    port = free_port()
    deployed = _mlops(home, "deploy", "local", "--port", str(port))
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    url = f"http://127.0.0.1:{port}"
    today = dt.datetime.now(dt.UTC).date().isoformat()
    try:
        with webhook_receiver() as receiver:
            _send(url, digits.unseen, seed=1)
            logged_in_distribution = _logged(home)
            assert logged_in_distribution >= 200
            calm = _mlops(home, "monitor", MLOPS_ALERT_WEBHOOK_URL=receiver.url)
            assert calm.returncode == 0, calm.stdout[-3000:] + calm.stderr[-3000:]
            # `mlops deploy local` serves outside a deployment stage: its traffic is the unstaged partition's.
            assert f"in local, stage unstaged, on {today}: {logged_in_distribution} logged prediction(s)" in calm.stdout
            assert "  overall:       no drift" in calm.stdout, calm.stdout
            assert calm.stdout.count(": no drift (") == 10, calm.stdout  # every signal, the embedding included
            assert "  checks:        no_drift passed, no_severe_drift passed" in calm.stdout
            # The service's own counters: every request, not only the sampled ones.
            assert f"  service:       {REQUESTS} prediction request(s) since the server started: 0 client error(s)" in (
                calm.stdout
            )
            assert receiver.received == []

            _send(url, [_inverted(png) for png in digits.unseen], seed=2)
            logged = _logged(home)
            drifted = _mlops(home, "monitor", MLOPS_ALERT_WEBHOOK_URL=receiver.url)
            assert drifted.returncode == 1, drifted.stdout[-3000:] + drifted.stderr[-3000:]
            assert f"{logged} logged prediction(s)" in drifted.stdout
            assert "  overall:       severe drift" in drifted.stdout
            assert "    input.brightness: severe drift (Wasserstein distance (normed) " in drifted.stdout
            assert "  checks:        no_drift failed (warning), no_severe_drift failed (error)" in drifted.stdout
            assert f"  service:       {2 * REQUESTS} prediction request(s) since the server started" in drifted.stdout
            [alert] = receiver.received
        assert alert["kind"] == "severe drift"
        assert alert["title"].startswith(f"Severe drift in unstaged on {today} for version 1 (")
        assert [a["title"] for a in read_alerts(home / "alerts" / "alerts.jsonl")] == [alert["title"]]
        report = Path(alert["details"]["report"])
        assert report.is_file() and f"report:        {report}" in drifted.stdout
    finally:
        stopped = _mlops(home, "undeploy", "local")
        assert stopped.returncode == 0, stopped.stderr

    # The drift sensor, evaluated against the home's instance: one retraining request for the day and version.
    from mlops_assets.defs.monitoring.sensors import drift_sensor

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        tick = drift_sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    [request] = tick.run_requests
    assert request.run_key == f"severe-drift-{today}-v1"
    assert request.tags["mlops/reason"] == "severe drift"
    assert "input.brightness" in request.tags["mlops/severe_signals"]


def test_staging_traffic_does_not_move_productions_verdict(
    tmp_path: Path, digits: Digits, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_assets.lib.deploy.supervisor import start_server, stop_server, wait_ready
    from mlops_assets.registry_home import open_registry

    home = tmp_path / "home"
    config = tmp_path / "run.yaml"
    config.write_text("ops: {trained_model: {config: {epochs: 3}}}\n")
    built = _mlops(home, "run", "--dataset", str(digits.dataset), "--config", str(config))
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    # The servers below are started from this process: its home is theirs (BentoML store, prediction logs).
    monkeypatch.setenv("MLOPS_HOME", str(home))
    with open_registry() as models:
        bento_tag = models.production().bento_tag
    servers = {}
    try:
        # The same model served in two stages, as the deployers start them: each told its stage.
        for stage in ("staging", "production"):
            env = _env(home, MLOPS_DEPLOYMENT_STAGE=stage, MLOPS_PREDICTIONS_URL=str(home / "predictions"))
            env["BENTOML_HOME"] = str(home / "bentoml")  # the store `mlops run` built the bento in
            servers[stage] = start_server(bento_tag, "127.0.0.1", free_port(), tmp_path / f"{stage}.log", env)
        for server in servers.values():
            wait_ready(server, 180)
        _send(servers["production"].url, digits.unseen, seed=3)
        _send(servers["staging"].url, [_inverted(png) for png in digits.unseen], seed=4)
        _logged(home)
    finally:
        for server in servers.values():
            stop_server(server)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    names = sorted(path.name for path in (home / "predictions").glob("*.jsonl"))
    assert {name.split(".")[1] for name in names} == {"staging", "production"}, names

    # Neither stage is deployed through a deployer here, so the version is named; both stages logged today, so
    # `mlops monitor` grades both, each verdict naming its stage.
    graded = _mlops(home, "monitor", "--version", "1")
    assert graded.returncode == 1, graded.stdout[-3000:] + graded.stderr[-3000:]
    staging_part, production_part = graded.stdout.split("Dagster run ")[1:]
    assert f"in local, stage staging, on {today}: " in staging_part
    assert "  overall:       severe drift" in staging_part
    assert "    input.brightness: severe drift (Wasserstein distance (normed) " in staging_part
    assert f"in local, stage production, on {today}: " in production_part
    assert "  overall:       no drift" in production_part, production_part
    assert "  checks:        no_drift passed, no_severe_drift passed" in production_part
    [alert] = read_alerts(home / "alerts" / "alerts.jsonl")
    assert alert["event_id"] == f"severe-drift-local-staging-{today}-v1"

    alone = _mlops(home, "monitor", "--version", "1", "--stage", "production")
    assert alone.returncode == 0, alone.stdout[-3000:] + alone.stderr[-3000:]
    assert alone.stdout.count("Dagster run ") == 1
    assert "  overall:       no drift" in alone.stdout, alone.stdout
