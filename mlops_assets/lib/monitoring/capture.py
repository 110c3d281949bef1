"""What the service keeps besides its prediction log, each in its own part of the prediction store: ground-truth
feedback, hard cases (low-confidence inputs, kept with their prediction) and the inputs of alert labels.

Everything is appended off the request path by `PredictionLog` writers (see prediction_log.py), so a slow disk or
bucket never holds a request.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import re
import time
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_assets.lib.monitoring.settings import CaptureSettings
from mlops_assets.lib.serving.prediction_log import PredictionLog
from mlops_assets.lib.serving.prediction_store import UNSTAGED, PredictionStore, substore

FEEDBACK = "feedback"
HARD_CASES = "hardcases"
ALERT_INPUTS = "alert-inputs"
# What the service answers with per request (uuid4 hex), and what feedback must name.
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_FEEDBACK_ITEMS = 1000
FEEDBACK_EXAMPLE = '{"feedback": [{"request_id": "<request_id of the answer>", "index": 0, "label": "cat"}]}'


class FeedbackItem(BaseModel):
    """The true label of image `index` of the request that answered with `request_id`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: str = Field(pattern=REQUEST_ID.pattern)
    index: int = Field(0, ge=0)
    label: str = Field(min_length=1)


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    feedback: list[FeedbackItem] = Field(min_length=1, max_length=MAX_FEEDBACK_ITEMS)


def feedback_record(item: FeedbackItem, source: str) -> dict[str, Any]:
    """One feedback line: the item and when and where (`source`: the endpoint, `mlops feedback`) it was given."""
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "request_id": item.request_id,
        "index": item.index,
        "label": item.label,
        "source": source,
    }


def parse_feedback(document: Any, labels: Sequence[str] | None) -> list[FeedbackItem]:
    """The items of a feedback document, or ValueError naming the first problem (shape, request id, a label the
    model does not know; labels None: any label) and what a valid body looks like."""
    try:
        body = FeedbackBody.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        # The offending value, shortened: a list of too many items must not come back whole.
        got = repr(first.get("input"))
        got = got if len(got) <= 80 else f"{got[:77]}..."
        raise ValueError(f"{where}: {first['msg']} (got {got}); send e.g. {FEEDBACK_EXAMPLE}") from None
    for number, item in enumerate(body.feedback):
        if labels is not None and item.label not in labels:
            raise ValueError(
                f"feedback.{number}.label: {item.label!r} is not a label of this model (labels: {', '.join(labels)})"
            )
    return body.feedback


def read_feedback(store: PredictionStore) -> dict[tuple[str, int], str]:
    """(request id, index) -> the true label, the latest given winning; lines that are not feedback (a request id
    that is not text, an index that is not an integer >= 0, a label that is not text) are skipped."""
    found: dict[tuple[str, int], str] = {}
    for name in store.names():
        for record in store.read(name):
            if not isinstance(record, dict):
                continue
            request_id, index, label = record.get("request_id"), record.get("index", 0), record.get("label")
            usable_index = isinstance(index, int) and not isinstance(index, bool) and index >= 0
            if isinstance(request_id, str) and usable_index and isinstance(label, str):
                found[(request_id, index)] = label
    return found


def feedback_given_on(store: PredictionStore, day: dt.date) -> set[tuple[str, int]]:
    """The (request id, index) of every usable feedback line given on `day` (UTC, by its timestamp)."""
    prefix = day.isoformat()
    found = set()
    for name in store.names():
        for record in store.read(name):
            if not isinstance(record, dict) or not str(record.get("timestamp", "")).startswith(prefix):
                continue
            request_id, index = record.get("request_id"), record.get("index", 0)
            if isinstance(request_id, str) and isinstance(index, int) and not isinstance(index, bool) and index >= 0:
                found.add((request_id, index))
    return found


class Capture:
    """The service's feedback, hard-case and alert-input writers over `store` (the prediction log's store)."""

    def __init__(
        self, store: PredictionStore, settings: CaptureSettings, seed: int | None = None, stage: str = UNSTAGED
    ) -> None:
        self.settings = settings
        # The server's deployment stage, in each file's name and record, as in the prediction log.
        self.stage = stage
        self.feedback_log = PredictionLog(substore(store, FEEDBACK), 1.0, stage=stage)
        self.hard_case_log = PredictionLog(substore(store, HARD_CASES), 1.0, stage=stage)
        self.alert_log = PredictionLog(substore(store, ALERT_INPUTS), 1.0, stage=stage)
        self._random = random.Random(seed)
        # The UTC day's end (epoch seconds) and the hard cases kept since it began.
        self._day_ends, self._kept_today = 0.0, 0

    def close(self) -> None:
        for log in (self.feedback_log, self.hard_case_log, self.alert_log):
            log.close()

    def accept_feedback(self, body: bytes, labels: Sequence[str], source: str) -> int:
        """Queue the feedback in a JSON `body`; the number of items, or ValueError saying what is wrong."""
        try:
            document = json.loads(body)
        except ValueError as error:
            raise ValueError(f"The body is not JSON ({error}); send e.g. {FEEDBACK_EXAMPLE}") from None
        items = parse_feedback(document, labels)
        self.feedback_log.submit([feedback_record(item, source) for item in items])
        return len(items)

    def _room_today(self) -> bool:
        # Compared with the day's end in epoch seconds: this runs for every low-confidence image, and formatting
        # the date each time costs more than the comparison.
        now = time.time()
        if now >= self._day_ends:
            midnight = dt.datetime.fromtimestamp(now, dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            self._day_ends, self._kept_today = (midnight + dt.timedelta(days=1)).timestamp(), 0
        return self._kept_today < self.settings.hard_cases.max_per_day

    def keep(
        self,
        model_version: str,
        endpoint: str,
        request_id: str,
        uploads: Sequence[bytes],
        labels: Sequence[str],
        confidences: Sequence[float],
    ) -> None:
        """Keep the hard cases (confidence at or below `hard_cases.confidence`, sampled, size- and count-bounded) and
        the inputs of alert labels (a marked label at or above its confidence) of one answered request."""
        hard, alerts = [], []
        rules = self.settings.hard_cases
        for index, (data, label, confidence) in enumerate(zip(uploads, labels, confidences, strict=True)):
            threshold = self.settings.alert_labels.get(label)
            alert = threshold is not None and confidence >= threshold
            kept = (
                confidence <= rules.confidence
                and len(data) <= rules.max_bytes
                and (rules.sample_rate >= 1.0 or self._random.random() < rules.sample_rate)
                and self._room_today()
            )
            if not (alert or kept):
                continue  # the common case: nothing to build (this runs on every answered image)
            record = {
                "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                "stage": self.stage,
                "model_version": model_version,
                "endpoint": endpoint,
                "request_id": request_id,
                "index": index,
                "label": label,
                "confidence": round(float(confidence), 6),
                "bytes": len(data),
                "image": base64.b64encode(data).decode(),
            }
            if alert:
                alerts.append({**record, "alert_confidence": threshold})
            if kept:
                self._kept_today += 1
                hard.append(record)
        if hard:
            self.hard_case_log.submit(hard)
        if alerts:
            self.alert_log.submit(alerts)
