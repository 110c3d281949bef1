"""OpenTelemetry's ASGI middleware with tracing off calls the app directly; with a real tracer it still traces."""

import asyncio

import pytest
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NoOpTracerProvider

from mlops_assets.lib.serving.disabled_tracing import skip_disabled_tracing

SCOPE = {"type": "http", "method": "POST", "path": "/predict", "headers": [], "server": ("127.0.0.1", 3000)}
pytestmark = pytest.mark.timeout(60)


class Recorder:
    """An ASGI app that answers 200 and keeps the `receive` and `send` it was given."""

    def __init__(self) -> None:
        self.channels: list[tuple] = []

    async def __call__(self, scope: dict, receive, send) -> None:
        self.channels.append((receive, send))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _serve(middleware: OpenTelemetryMiddleware) -> tuple[list[dict], object, object]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(middleware(dict(SCOPE), receive, send))
    return sent, receive, send


@pytest.fixture
def patched(monkeypatch: pytest.MonkeyPatch) -> None:
    # Restored after the test: the patch is process-wide.
    monkeypatch.setattr(OpenTelemetryMiddleware, "__call__", OpenTelemetryMiddleware.__call__)
    skip_disabled_tracing()
    skip_disabled_tracing()  # idempotent: a second call must not wrap the wrapper


def test_with_tracing_off_the_app_gets_the_servers_own_receive_and_send(patched: None) -> None:
    app = Recorder()
    sent, receive, send = _serve(OpenTelemetryMiddleware(app, tracer_provider=NoOpTracerProvider()))
    assert app.channels == [(receive, send)]
    assert [message.get("status") for message in sent] == [200, None]


def test_with_a_real_tracer_requests_are_still_traced(patched: None) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = Recorder()
    sent, _, send = _serve(OpenTelemetryMiddleware(app, tracer_provider=provider))
    assert [message.get("status") for message in sent] == [200, None]
    assert app.channels[0][1] is not send  # the middleware's own send, which opens a span per message
    assert sorted(span.name for span in exporter.get_finished_spans()) == [
        "POST /predict",
        "POST /predict http send",
        "POST /predict http send",
    ]
