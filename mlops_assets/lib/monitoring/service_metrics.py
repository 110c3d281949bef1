"""Request, error and latency figures of the prediction endpoints, from the service's own Prometheus `/metrics`."""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

# BentoML's series for every HTTP request its service answers (per endpoint and status code).
REQUESTS = "bentoml_service_request"
DURATION = "bentoml_service_request_duration_seconds"
PREDICTION_PREFIX = "/predict"


@dataclass(frozen=True)
class ServiceFigures:
    """Counts since the server started (Prometheus counters), over the prediction endpoints; latencies in seconds,
    estimated from the histogram's buckets as Prometheus' histogram_quantile does (None without requests)."""

    requests: int
    client_errors: int
    server_errors: int
    latency_p50_s: float | None
    latency_p95_s: float | None

    @property
    def error_share(self) -> float:
        return (self.client_errors + self.server_errors) / self.requests if self.requests else 0.0

    def describe(self) -> str:
        if not self.requests:
            return "no prediction requests since the server started"
        latency = f"latency p50 {self.latency_p50_s * 1000:.0f} ms, p95 {self.latency_p95_s * 1000:.0f} ms"
        return (
            f"{self.requests} prediction request(s) since the server started: {self.client_errors} client error(s) "
            f"(4xx), {self.server_errors} server error(s) (5xx), {latency}"
        )


def _quantile(buckets: dict[float, float], quantile: float) -> float | None:
    """Linear interpolation inside the bucket holding the quantile (cumulative counts per upper bound)."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if total == 0:
        return None
    rank = quantile * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # beyond the largest finite bucket: its bound is the best estimate
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


def parse_service_metrics(text: str) -> ServiceFigures:
    """The figures of the prediction endpoints (`/predict*`) in a Prometheus text exposition."""
    requests = client_errors = server_errors = 0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels.get("endpoint", "").startswith(PREDICTION_PREFIX):
                continue
            if family.name == REQUESTS and sample.name == f"{REQUESTS}_total":
                count = int(sample.value)
                code = sample.labels.get("http_response_code", "")
                requests += count
                client_errors += count if code.startswith("4") else 0
                server_errors += count if code.startswith("5") else 0
            elif family.name == DURATION and sample.name == f"{DURATION}_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return ServiceFigures(requests, client_errors, server_errors, _quantile(buckets, 0.5), _quantile(buckets, 0.95))


def read_service_metrics(url: str, timeout_s: float = 10.0) -> ServiceFigures:
    """The figures of the service at `url`; raises httpx.HTTPError when /metrics cannot be read."""
    response = httpx.get(f"{url.rstrip('/')}/metrics", timeout=timeout_s)
    response.raise_for_status()
    return parse_service_metrics(response.text)
