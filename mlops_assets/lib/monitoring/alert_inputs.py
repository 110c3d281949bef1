"""The inputs the service kept because their prediction was an alert label (capture.ALERT_INPUTS): read past a cursor,
each written out as an image file an alert can point to."""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_assets.lib.monitoring.capture import REQUEST_ID
from mlops_assets.lib.serving.prediction_store import PredictionStore

# What each kept input must carry to be alerted on (capture.Capture.keep writes them).
REQUIRED = ("request_id", "index", "model_version", "label", "confidence", "alert_confidence", "image")


@dataclass(frozen=True)
class AlertInput:
    """One kept input: where it was read (`source`: file name and 1-based record number), the prediction, the image."""

    source: str
    record: dict[str, Any]
    image: bytes

    @property
    def event_id(self) -> str:
        """One event per answered image: an input is alerted once however often the log is read."""
        return f"alert-label-{self.record['request_id']}-{self.record['index']}"

    def save(self, folder: Path) -> Path:
        """Write the image to `folder/<request_id>-<index>.<format>` (format from its own header) and return it."""
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(self.image)) as opened:
                suffix = (opened.format or "bin").lower()
        except (UnidentifiedImageError, OSError):
            suffix = "bin"  # the service decoded it, so this does not happen; kept rather than lost if it does
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.record['request_id']}-{self.record['index']}.{suffix}"
        path.write_bytes(self.image)
        return path


def _field_problem(record: dict[str, Any]) -> str:
    """Why a kept input's fields cannot name a file and an alert ('' when they can)."""
    request_id, index = record["request_id"], record["index"]
    if not isinstance(request_id, str) or not REQUEST_ID.match(request_id):
        return f"request_id = {str(request_id)[:40]!r} is not a request id"
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        return f"index = {index!r} is not an integer >= 0"
    for name in ("model_version", "label"):
        if not isinstance(record[name], str):
            return f"{name} = {record[name]!r} is not text"
    for name in ("confidence", "alert_confidence"):
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"{name} = {value!r} is not a finite number"
    return ""


def parse_cursor(cursor: str | None) -> dict[str, int]:
    """File name -> records already read; {} for no cursor (everything is new)."""
    return {str(name): int(count) for name, count in json.loads(cursor).items()} if cursor else {}


def new_alert_inputs(
    store: PredictionStore, cursor: dict[str, int]
) -> tuple[list[AlertInput], dict[str, int], list[str]]:
    """The inputs kept since `cursor`, the cursor past them (files no longer listed dropped), and one phrase per
    record that could not be used (skipped, named by file and record number)."""
    found, problems, after = [], [], {}
    for name in store.names():
        records = store.read(name)  # a last line still being written is not returned, so it is read next time
        done = cursor.get(name, 0)
        for number, record in enumerate(records[done:], start=done + 1):
            missing = [key for key in REQUIRED if not isinstance(record, dict) or key not in record]
            if missing:
                problems.append(f"{name} record {number}: missing {', '.join(missing)}")
                continue
            problem = _field_problem(record)
            if problem:
                problems.append(f"{name} record {number}: {problem}")
                continue
            try:
                image = base64.b64decode(record["image"], validate=True)
            except (binascii.Error, ValueError, TypeError) as error:
                problems.append(f"{name} record {number}: image is not base64 ({error})")
                continue
            details = {key: value for key, value in record.items() if key != "image"}
            found.append(AlertInput(f"{name} record {number}", details, image))
        after[name] = len(records)
    return found, after, problems
