"""Bounded load on loopback: 64 concurrent clients, zero errors, and the same answers as single requests."""

import asyncio
import base64
import time

import httpx
import pytest

from mlops_assets.lib.serving.serving_arguments import ServiceArguments
from mlops_assets_tests.service_fixtures import API_KEY, ServedBento, metric_total, settled_metrics

# The load lasts DURATION_S; the bound also covers starting the shared server when this test runs first.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
CLIENTS = 64
DURATION_S = 15.0


def _request(endpoint: str, data: bytes) -> dict:
    if endpoint == "/predict":
        return {"files": {"images": ("x.png", data, "image/png")}}
    if endpoint == "/predict_image":
        return {"content": data, "headers": {"Content-Type": "image/png"}}
    return {"json": {"images": [base64.b64encode(data).decode()]}}


async def _hammer(
    url: str, inputs: list[bytes], deadline: float, worker: int
) -> list[tuple[int, int, dict | str, bool]]:
    endpoints = ("/predict", "/predict_image", "/predict_base64")
    results = []
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        step = worker
        # Every client sends at least one request, however late it starts on a busy machine: the test asserts
        # each of them got an answer.
        while step == worker or time.monotonic() < deadline:
            index = step % len(inputs)
            endpoint = endpoints[step % len(endpoints)]
            response = await client.post(endpoint, **_request(endpoint, inputs[index]))
            ok = response.status_code == 200
            closed = response.headers.get("connection", "").lower() == "close"
            results.append((index, response.status_code, response.json() if ok else response.text, closed))
            step += 1
    return results


def test_64_concurrent_clients_get_no_errors_and_the_single_request_answers(served_bento: ServedBento) -> None:
    inputs = [data for _, data in served_bento.samples[:12]]
    with served_bento.client() as client:
        reference = [client.post("/predict", files={"images": ("x.png", data)}).json() for data in inputs]
        # The server may have served other tests: counters are compared as differences across this load.
        rebalanced_before = metric_total(settled_metrics(client), "rebalanced_connections_total")

    async def run() -> list:
        deadline = time.monotonic() + DURATION_S
        batches = await asyncio.gather(*(_hammer(served_bento.url, inputs, deadline, w) for w in range(CLIENTS)))
        return [result for batch in batches for result in batch]

    started = time.monotonic()
    results = asyncio.run(run())
    elapsed_s = time.monotonic() - started
    with served_bento.client() as client:
        metrics = settled_metrics(client)
    errors = [(status, body) for _, status, body, _ in results if status != 200]
    assert not errors, f"{len(errors)} of {len(results)} requests failed, e.g. {errors[:3]}"
    assert len(results) >= CLIENTS, f"{len(results)} answers for {CLIENTS} clients"
    for index, _, body, _ in results:
        expected = reference[index]["predictions"][0]
        answer = body["predictions"][0]
        assert body["model_version"] == served_bento.model_tag
        assert answer["label"] == expected["label"]
        for label, value in expected["probabilities"].items():
            # Batched and single forward passes may differ in the last float bits, never more.
            assert answer["probabilities"][label] == pytest.approx(value, abs=1e-5)
    # Concurrent requests were answered by shared forward passes: on average more than one image per pass.
    images = metric_total(metrics, "inference_batch_size_sum")
    passes = metric_total(metrics, "inference_batch_size_count")
    assert passes > 0 and images >= len(results)
    assert images / passes > 1, f"{images:.0f} images in {passes:.0f} forward passes: no batching under load"
    # Backlogged workers closed some keep-alive connections (ConnectionRebalancer) and every client reconnected
    # without an error: the zero-error assertion above covers the requests sent on the new connections.
    closes = sum(closed for *_, closed in results)
    assert closes > 0, "no worker closed a connection to rebalance while backlogged"
    # The fixture's bento uses the default workers and interval: at most one close per interval per worker.
    defaults = ServiceArguments.model_fields
    interval_s = defaults["rebalance_interval_ms"].default / 1000
    assert closes <= defaults["api_workers"].default * (elapsed_s / interval_s + 1), (closes, elapsed_s)
    assert metric_total(metrics, "rebalanced_connections_total") - rebalanced_before == closes
