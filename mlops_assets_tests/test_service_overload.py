"""Load shedding end to end: a request that waits past `max_latency_ms` for the model gets a 503 that says so,
and the server goes on answering."""

import time
from collections.abc import Iterator

import httpx
import pytest

from mlops_assets_tests.service_fixtures import API_KEY, API_KEY_ENV, ServedBento, serve_in_own_home

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def overloaded_server(served_bento: ServedBento, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test model in a bento that batches one image at a time and sheds anything queued over 1 ms."""
    from mlops_assets.packaging import build_service_bento
    from mlops_assets.resources.local_deployer import stop_process_group

    serving = {
        "max_batch_size": 1,
        "max_latency_ms": 1,
        "api_workers": 1,
        "api_key_env": API_KEY_ENV,
        "prediction_log_sample_rate": 0.0,
    }
    artifact, _ = build_service_bento(served_bento.model_tag, labels={"purpose": "overload-test"}, serving=serving)
    # Started without deploy_local (that would stop the shared server the other service tests use), in a home of
    # its own (starting in the shared one would blank the shared server's metrics, whichever test runs next).
    url, pid = serve_in_own_home(artifact.bento_tag, tmp_path_factory.mktemp("overload") / "home")
    try:
        yield url
    finally:
        stop_process_group(pid)


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
