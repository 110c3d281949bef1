"""Alerts for what needs a person: written to a local alert log, and posted to a webhook when one is configured."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlops_assets.lib.errors import MLOpsError

SEVERE_DRIFT = "severe drift"
RUN_FAILED = "run failed"
GATE_LOST = "candidate lost the gate"


class AlertDeliveryError(MLOpsError):
    """The webhook did not take an alert (the alert log still has it)."""


@dataclass(frozen=True)
class Alert:
    """One alert: its kind (SEVERE_DRIFT, RUN_FAILED, GATE_LOST), a one-line title and the facts behind it."""

    kind: str
    title: str
    environment: str
    details: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def payload(self) -> dict[str, Any]:
        """The JSON body posted to a webhook; `text` is the title, which chat webhooks (Slack's too) display."""
        return {"text": f"[{self.environment}] {self.title}", **asdict(self)}


@dataclass(frozen=True)
class Delivery:
    """Where an alert went: the alert log always; the webhook's URL and its answer, or why it failed."""

    log_path: Path
    webhook: str = ""
    error: str = ""

    @property
    def delivered(self) -> bool:
        return not self.error

    def raise_for_failure(self) -> None:
        if self.error:
            raise AlertDeliveryError(self.error)


def _post(url: str, alert: Alert, timeout_s: float) -> str:
    """'' when the webhook took the alert (2xx), else why not."""
    try:
        response = httpx.post(url, json=alert.payload(), timeout=timeout_s)
    except httpx.HTTPError as error:
        return f"webhook {url} unreachable ({type(error).__name__}: {error}); the alert is in the alert log"
    if not response.is_success:
        return f"webhook {url} answered HTTP {response.status_code}: {response.text[:200]!r}"
    return ""


def send_alert(alert: Alert, log_path: Path, webhook_url: str = "", timeout_s: float = 10.0) -> Delivery:
    """Post `alert` to `webhook_url` (when given), then append it with the outcome to the alert log (JSON lines).

    Never raises for a failed post: the returned Delivery says what failed (`raise_for_failure` to raise it), and the
    alert log keeps the alert either way.
    """
    error = _post(webhook_url, alert, timeout_s) if webhook_url else ""
    record = {**asdict(alert), "webhook": webhook_url, "delivery_error": error}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # One write per record on a file opened for appending: concurrent writers never interleave within a line.
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
    return Delivery(log_path, webhook_url, error)


def webhook_url(variable: str) -> str:
    """The webhook URL from the environment variable `variable` ('' when unset: alerts go to the log only)."""
    return os.environ.get(variable, "").strip()


def read_alerts(log_path: Path) -> list[dict[str, Any]]:
    """Every alert in the log, oldest first (a line still being written is left out)."""
    if not log_path.is_file():
        return []
    lines = log_path.read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]
