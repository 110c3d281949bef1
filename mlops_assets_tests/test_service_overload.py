"""Load shedding end to end: a request that waits past `max_latency_ms` for the model gets a 503 that says so,
and the server goes on answering."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlops_assets import settings
from mlops_assets_tests.service_fixtures import API_KEY, API_KEY_ENV, ServedBento

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def overloaded_server(served_bento: ServedBento) -> Iterator[str]:
    """The test model in a bento that batches one image at a time and sheds anything queued over 1 ms."""
    from mlops_assets.packaging import build_service_bento
    from mlops_assets_tests.conftest import free_port

    serving = {
        "max_batch_size": 1,
        "max_latency_ms": 1,
        "api_workers": 1,
        "api_key_env": API_KEY_ENV,
        "prediction_log_sample_rate": 0.0,
    }
    artifact, _ = build_service_bento(served_bento.model_tag, labels={"purpose": "overload-test"}, serving=serving)
    port = free_port()
    # Started directly, not with deploy_local: that would stop the shared server the other service tests use.
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "bentoml"), "serve", artifact.bento_tag, "--host", "127.0.0.1",
         "--port", str(port)],
        env={**os.environ, **settings.export_environment()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, "the server exited during start-up"
            assert time.monotonic() < deadline, "the server did not become ready within 120 s"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def test_a_request_queued_past_the_latency_bound_gets_503_with_retry_after(
    served_bento: ServedBento, overloaded_server: str
) -> None:
    _, data = served_bento.samples[0]
    # 200 images at one per forward pass: the last pieces queue behind ~200 passes, far beyond the 1 ms bound.
    files = [("images", (f"{i}.png", data, "image/png")) for i in range(200)]
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=overloaded_server, headers=headers, timeout=60) as client:
        shed = client.post("/predict", files=files)
        assert shed.status_code == 503, shed.text
        assert shed.headers["Retry-After"] == "1"
        assert "overloaded" in shed.json()["error"]
        # The server goes on answering. A lone image is dispatched as soon as the model is free; on a busy machine
        # even that can exceed a 1 ms bound, so the client does what Retry-After asks, a bounded number of times.
        statuses = []
        for _ in range(20):
            answer = client.post("/predict", files={"images": ("x.png", data, "image/png")})
            statuses.append(answer.status_code)
            if answer.status_code != 503:
                break
            time.sleep(1)
    assert answer.status_code == 200, statuses
    assert answer.json()["model_version"] == served_bento.model_tag
