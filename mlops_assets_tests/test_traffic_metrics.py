"""BentoML's traffic metrics with bound series: the same series and values as BentoML's own middleware."""

import asyncio
import contextlib

import pytest
from bentoml._internal.context import server_context
from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from mlops_assets.lib.serving import traffic_metrics
from mlops_assets.lib.serving.traffic_metrics import _call_with_bound_series, bind_traffic_series

LABELS = ["endpoint", "service_name", "service_version", "http_response_code", "runner_name"]
pytestmark = pytest.mark.timeout(60)


class Failure(RuntimeError):
    pass


async def app(scope: dict, receive, send) -> None:
    """Answers by path: /fail raises before answering, /stream answers in two pieces, /missing is a 404."""
    path = scope["path"]
    if path == "/fail":
        raise Failure("the handler failed")
    status = 404 if path.startswith("/missing") else 500 if path == "/error" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    if path == "/stream":
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
    await send({"type": "http.response.body", "body": b"b"})


def middleware() -> tuple[RunnerTrafficMetricsMiddleware, CollectorRegistry]:
    """BentoML's middleware over `app`, its series in a registry of its own (what its `_setup` makes, in
    BentoML's metrics client)."""
    registry = CollectorRegistry()
    instance = RunnerTrafficMetricsMiddleware(app, namespace="svc", skip_paths=["/metrics", "/readyz"])
    instance.metrics_request_duration = Histogram(
        "svc_request_duration_seconds", "duration", LABELS, buckets=(60.0,), registry=registry
    )
    instance.metrics_request_total = Counter("svc_request_total", "total", LABELS, registry=registry)
    instance.metrics_request_in_progress = Gauge(
        "svc_request_in_progress",
        "in progress",
        ["endpoint", "service_name", "service_version", "runner_name"],
        registry=registry,
    )
    instance.metrics_last_request_timestamp = Gauge(
        "svc_last_request_timestamp_seconds",
        "last request",
        ["service_name", "service_version", "runner_name"],
        registry=registry,
    )
    instance._is_setup = True
    return instance, registry


PATHS = ["/predict", "/predict", "/stream", "/error", "/missing/a", "/missing/b", "/readyz", "/fail", "/predict"]


def serve(instance: RunnerTrafficMetricsMiddleware, paths: list[str]) -> list[dict]:
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def run() -> None:
        for path in paths:
            with contextlib.suppress(Failure):
                await instance({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send)

    asyncio.run(run())
    return sent


def samples(registry: CollectorRegistry) -> dict:
    """Every sample by (name, labels); times (last request, creation, summed durations) reduced to whether set."""
    found = {}
    for family in registry.collect():
        for sample in family.samples:
            value = sample.value
            if sample.name.endswith(("_timestamp_seconds", "_sum", "_created")):
                value = value > 0
            found[(sample.name, tuple(sorted(sample.labels.items())))] = value
    return found


def use_bound_series(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `bind_traffic_series` does, undone after the test."""
    monkeypatch.setattr(traffic_metrics, "_original_call", RunnerTrafficMetricsMiddleware.__dict__["__call__"])
    monkeypatch.setattr(RunnerTrafficMetricsMiddleware, "__call__", _call_with_bound_series)


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server_context, "bento_name", "classifier")
    monkeypatch.setattr(server_context, "bento_version", "v1")
    monkeypatch.setattr(server_context, "service_name", "ImageClassifier")


def test_bound_series_read_exactly_as_bentomls_own(names, monkeypatch: pytest.MonkeyPatch) -> None:
    bentoml_own, own_registry = middleware()
    own_sent = serve(bentoml_own, PATHS)
    use_bound_series(monkeypatch)
    bound, bound_registry = middleware()
    bound_sent = serve(bound, PATHS)

    assert bound_sent == own_sent
    assert samples(bound_registry) == samples(own_registry)
    found = samples(bound_registry)
    total = {dict(labels)["endpoint"]: value for (name, labels), value in found.items() if name == "svc_request_total"}
    # Counted at the end of each answer: a request whose handler raised before answering is not counted.
    assert total == {"/predict": 3, "/stream": 1, "/error": 1, "/missing/a": 1, "/missing/b": 1, "/readyz": 1}
    in_progress = [value for (name, _), value in found.items() if name == "svc_request_in_progress"]
    assert in_progress and all(value == 0 for value in in_progress)  # the failed request was not left in progress


def test_a_skipped_path_does_not_stamp_the_last_request_time(names, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RunnerTrafficMetricsMiddleware, "__call__", _call_with_bound_series)
    monkeypatch.setattr(traffic_metrics, "_original_call", lambda *args: pytest.fail("BentoML's code was called"))
    instance, registry = middleware()
    serve(instance, ["/readyz"])
    assert not any(value for (name, _), value in samples(registry).items() if name.endswith("_timestamp_seconds"))
    serve(instance, ["/predict"])
    assert any(value for (name, _), value in samples(registry).items() if name.endswith("_timestamp_seconds"))


def test_paths_beyond_the_bound_are_counted_by_bentomls_own_code(names, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [f"/missing/{index}" for index in range(5)] + ["/predict", "/missing/0"]
    bentoml_own, own_registry = middleware()
    serve(bentoml_own, paths)
    monkeypatch.setattr(traffic_metrics, "MAX_BOUND_ENDPOINTS", 2)
    use_bound_series(monkeypatch)
    bound, bound_registry = middleware()
    serve(bound, paths)
    assert len(bound.__dict__["_bound_series"]) == 2
    assert samples(bound_registry) == samples(own_registry)


def test_the_services_routes_are_bound_even_after_other_paths_filled_the_bound(
    names, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_context, "service_routes", ["/predict"])
    monkeypatch.setattr(traffic_metrics, "MAX_BOUND_ENDPOINTS", 2)
    use_bound_series(monkeypatch)
    bound, _ = middleware()
    serve(bound, ["/missing/0", "/missing/1", "/missing/2", "/predict"])
    assert list(bound.__dict__["_bound_series"]) == ["/missing/0", "/missing/1", "/predict"]


def test_binding_is_idempotent_and_keeps_bentomls_call_for_websockets(monkeypatch: pytest.MonkeyPatch) -> None:
    original = RunnerTrafficMetricsMiddleware.__dict__["__call__"]
    monkeypatch.setattr(RunnerTrafficMetricsMiddleware, "__call__", original)
    monkeypatch.setattr(traffic_metrics, "_original_call", None)
    bind_traffic_series()
    bind_traffic_series()
    assert RunnerTrafficMetricsMiddleware.__call__ is _call_with_bound_series
    assert traffic_metrics._original_call is original

    seen = []

    async def recording(self, scope, receive, send) -> None:
        seen.append(scope["type"])

    monkeypatch.setattr(traffic_metrics, "_original_call", recording)
    instance, _ = middleware()
    asyncio.run(instance({"type": "websocket", "path": "/ws"}, None, None))
    asyncio.run(instance({"type": "http", "path": "/metrics"}, None, None))
    assert seen == ["websocket", "http"]
