"""Alerts for what needs a person: written to a local alert log, and posted to a webhook when one is configured."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlops_assets.lib.errors import MLOpsError

SEVERE_DRIFT = "severe drift"
RUN_FAILED = "run failed"
GATE_LOST = "candidate lost the gate"
DEPLOYMENT_FAILED = "deployment failed"
# A prediction of a label the configuration marks (monitoring.alert_labels) at or above its confidence.
ALERT_LABEL = "alert label"
# A channel besides the log and the webhook (Slack): posts the alert, returns '' or why it failed.
Channel = Callable[["Alert"], str]


class AlertDeliveryError(MLOpsError):
    """The webhook did not take an alert (the alert log still has it)."""


@dataclass(frozen=True)
class Alert:
    """One alert: its kind (SEVERE_DRIFT, RUN_FAILED, GATE_LOST, DEPLOYMENT_FAILED, ALERT_LABEL), a one-line title and
    the facts behind it. `event_id` names the event it reports: an alert whose event was already delivered is not
    sent again ('' : every call sends)."""

    kind: str
    title: str
    environment: str
    details: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    event_id: str = ""

    def payload(self) -> dict[str, Any]:
        """The JSON body posted to a webhook; `text` is the title, which chat webhooks (Slack's too) display."""
        return {"text": f"[{self.environment}] {self.title}", **asdict(self)}


@dataclass(frozen=True)
class Delivery:
    """Where an alert went: the alert log always; the webhook's URL and its answer, or why it failed."""

    log_path: Path
    webhook: str = ""
    error: str = ""
    # Extra channels (Slack) the alert was posted to.
    channels: tuple[str, ...] = ()
    # True when the alert's event had been delivered before: nothing was posted or written this time.
    duplicate: bool = False

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


@contextmanager
def _locked(log_path: Path) -> Iterator[Path]:
    """The alert log under an exclusive lock (its own lock file), so a record is found and written or replaced
    without another writer in between."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with (log_path.parent / f".{log_path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield log_path
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _logged_event(log_path: Path, event_id: str) -> dict[str, Any] | None:
    for record in read_alerts(log_path):
        if record.get("event_id") == event_id:
            return record
    return None


def _write_record(log_path: Path, record: dict[str, Any]) -> None:
    """Append `record`, or replace the line of the same event (an earlier, failed delivery); call under `_locked`."""
    line = json.dumps(record, default=str)
    event_id = record.get("event_id", "")
    if event_id and _logged_event(log_path, event_id) is not None:
        lines = log_path.read_text(encoding="utf-8").split("\n")
        replaced = [line if text.strip() and json.loads(text).get("event_id") == event_id else text for text in lines]
        # Rewritten in place (same file), under the lock every writer takes.
        log_path.write_text("\n".join(replaced), encoding="utf-8")
        return
    # One write per record on a file opened for appending: concurrent writers never interleave within a line.
    with log_path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def send_alert(
    alert: Alert,
    log_path: Path,
    webhook_url: str = "",
    timeout_s: float = 10.0,
    channels: Mapping[str, Channel] | None = None,
) -> Delivery:
    """Post `alert` to `webhook_url` (when given) and to each of `channels` (name -> poster, e.g. Slack), then write
    it with the outcome to the alert log (JSON lines).

    Never raises for a failed post: the returned Delivery says what failed (`raise_for_failure` to raise it), and the
    alert log keeps the alert either way. With an `event_id`, an event is delivered once: an event the log holds as
    delivered is neither posted nor written again (`Delivery.duplicate`), and a retry of one whose delivery failed
    replaces its log line, so the log keeps one line per event.
    """
    channels = dict(channels or {})
    if alert.event_id:
        with _locked(log_path):
            earlier = _logged_event(log_path, alert.event_id)
        if earlier is not None and not earlier.get("delivery_error"):
            return Delivery(log_path, webhook_url, "", tuple(earlier.get("channels", ())), duplicate=True)
    errors = [_post(webhook_url, alert, timeout_s)] if webhook_url else []
    posted = []
    for name, post in channels.items():
        error = post(alert)
        errors.append(f"{name}: {error}" if error else "")
        posted += [] if error else [name]
    error = "; ".join(found for found in errors if found)
    record = {**asdict(alert), "webhook": webhook_url, "channels": posted, "delivery_error": error}
    with _locked(log_path):
        _write_record(log_path, record)
    return Delivery(log_path, webhook_url, error, tuple(posted))


def webhook_url(variable: str) -> str:
    """The webhook URL from the environment variable `variable` ('' when unset: alerts go to the log only)."""
    return os.environ.get(variable, "").strip()


def read_alerts(log_path: Path) -> list[dict[str, Any]]:
    """Every alert in the log, oldest first (a line still being written is left out)."""
    if not log_path.is_file():
        return []
    lines = log_path.read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines[:-1] if line.strip()]
