"""OpenTelemetry's ASGI middleware passes requests straight through when tracing is off.

BentoML always wraps its app in OpenTelemetry's ASGI middleware. With the SDK disabled (`OTEL_SDK_DISABLED=true`, the
bento's default) the tracer is a no-op, yet for every request the middleware still parses the URL and headers into
span attributes, opens a no-op span for the request and one per message sent, and wraps `send` and `receive`: in a
profile of the service under load it was one of the larger costs of a small request, to record nothing. With a
real tracer (tracing turned on), nothing changes.
"""

from __future__ import annotations

import typing

# OpenTelemetry's own __call__, kept when the patch replaces it, and its no-op tracer's class (imported once, not on
# every request).
_original_call: typing.Callable | None = None
_no_op_tracer: type = type(None)


async def _call_unless_disabled(self: typing.Any, scope: dict, receive: typing.Callable, send: typing.Callable):
    """OpenTelemetryMiddleware.__call__, but a straight call to the app when its tracer is a no-op."""
    if isinstance(self.tracer, _no_op_tracer):
        return await self.app(scope, receive, send)
    return await _original_call(self, scope, receive, send)


def skip_disabled_tracing() -> None:
    """Patch OpenTelemetry's ASGI middleware in this process (idempotent); call before the server takes requests."""
    global _original_call, _no_op_tracer
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.trace import NoOpTracer

    _no_op_tracer = NoOpTracer
    if OpenTelemetryMiddleware.__call__ is not _call_unless_disabled:
        _original_call = OpenTelemetryMiddleware.__call__
        OpenTelemetryMiddleware.__call__ = _call_unless_disabled
