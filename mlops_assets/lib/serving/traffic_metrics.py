"""BentoML's per-request traffic metrics, with each endpoint's labelled series looked up once instead of per request.

BentoML wraps every request in `RunnerTrafficMetricsMiddleware`, which updates four Prometheus series per request
(last request time, requests in progress, request count, duration histogram). It finds each series by its labels on
every request: four `labels(...)` calls, each sorting and checking its keyword labels under a lock. In the service's
request-path measurement (`benchmarks/results/request_path.md`, "BentoML traffic metrics") that lookup was a large
part of the middleware's own time. Patched, the middleware keeps the series it found per
endpoint (and per status code) and updates the same series with the same values: `/metrics` reads exactly as before.
WebSocket scopes, and paths beyond `MAX_BOUND_ENDPOINTS` (every distinct path a client sends gets its own series in
BentoML) other than the service's own routes, keep BentoML's own code.
"""

from __future__ import annotations

import typing
from timeit import default_timer

# Bound series are kept for at most this many endpoints per worker, plus the service's own routes; further paths (404
# probes, say) are looked up per request as in BentoML, so a client cannot grow this cache without bound, nor keep
# the service's routes out of it by arriving first.
MAX_BOUND_ENDPOINTS = 64

_original_call: typing.Callable | None = None


class _EndpointSeries(typing.NamedTuple):
    last_request: typing.Any  # None for paths BentoML does not time-stamp (its skip paths)
    in_progress: typing.Any
    # status code -> (request count, request duration)
    by_status: dict[int, tuple[typing.Any, typing.Any]]
    labels: dict[str, str]


def _series(self: typing.Any, endpoint: str) -> _EndpointSeries | None:
    """The endpoint's bound series, found on first use; None once MAX_BOUND_ENDPOINTS are bound."""
    from bentoml._internal.context import server_context

    bound = self.__dict__.setdefault("_bound_series", {})
    series = bound.get(endpoint)
    if series is not None:
        return series
    if len(bound) >= MAX_BOUND_ENDPOINTS and endpoint not in (server_context.service_routes or ()):
        return None
    names = {
        "service_name": server_context.bento_name,
        "service_version": server_context.bento_version,
        "runner_name": server_context.service_name,
    }
    last_request = None
    if not endpoint.startswith(tuple(self.skip_paths)):
        last_request = self.metrics_last_request_timestamp.labels(**names)
    in_progress = self.metrics_request_in_progress.labels(endpoint=endpoint, **names)
    series = bound[endpoint] = _EndpointSeries(last_request, in_progress, {}, names)
    return series


async def _call_with_bound_series(self: typing.Any, scope: dict, receive: typing.Callable, send: typing.Callable):
    """RunnerTrafficMetricsMiddleware.__call__ for HTTP requests, updating series bound once per endpoint."""
    if scope["type"] != "http" or scope["path"] == "/metrics":
        return await _original_call(self, scope, receive, send)
    if not self._is_setup:
        self._setup()
    endpoint = scope["path"]
    series = _series(self, endpoint)
    if series is None:
        return await _original_call(self, scope, receive, send)
    if series.last_request is not None:
        series.last_request.set_to_current_time()
    start_time = default_timer()
    status_code = 0

    async def counting_send(message: dict) -> None:
        nonlocal status_code
        kind = message["type"]
        if kind == "http.response.start":
            status_code = message["status"]
        elif kind == "http.response.body" and not message.get("more_body", False):
            pair = series.by_status.get(status_code)
            if pair is None:
                labels = {"endpoint": endpoint, "http_response_code": status_code, **series.labels}
                pair = series.by_status[status_code] = (
                    self.metrics_request_total.labels(**labels),
                    self.metrics_request_duration.labels(**labels),
                )
            pair[0].inc()
            pair[1].observe(max(default_timer() - start_time, 0))
        await send(message)

    series.in_progress.inc()
    try:
        await self.app(scope, receive, counting_send)
    finally:
        series.in_progress.dec()


def bind_traffic_series() -> None:
    """Patch BentoML's traffic metrics middleware in this process (idempotent); call before the server takes
    requests."""
    global _original_call
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    if RunnerTrafficMetricsMiddleware.__call__ is not _call_with_bound_series:
        _original_call = RunnerTrafficMetricsMiddleware.__call__
        RunnerTrafficMetricsMiddleware.__call__ = _call_with_bound_series
