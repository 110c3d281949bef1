"""Sampled prediction records for monitoring, appended as JSON lines by a background thread."""

from __future__ import annotations

import datetime as dt
import json
import os
import queue
import random
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A bounded queue: if the disk stalls, records are dropped (and counted) rather than holding requests or memory.
_QUEUE_LIMIT = 10_000
_STOP = object()


def prediction_record(
    model_version: str, label: str, confidence: float, statistics: Mapping[str, Any], endpoint: str
) -> dict[str, Any]:
    """One logged prediction: the input's statistics (as validation computes them), the answer and the model."""
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "model_version": model_version,
        "endpoint": endpoint,
        "label": label,
        "confidence": round(float(confidence), 6),
        **statistics,
    }


class PredictionLog:
    """Samples requests at `sample_rate` and appends their records under `directory`, off the request path."""

    def __init__(self, directory: Path, sample_rate: float, seed: int | None = None) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"prediction log sample rate must be within [0, 1], got {sample_rate}.")
        self.directory = directory
        self.sample_rate = sample_rate
        self.dropped = 0
        self._random = random.Random(seed)
        self._queue: queue.Queue = queue.Queue(maxsize=_QUEUE_LIMIT)
        self._thread = threading.Thread(target=self._write_loop, name="prediction-log", daemon=True)
        self._thread.start()

    def should_sample(self) -> bool:
        """Decide once per request, so a sampled request logs all of its images."""
        return self.sample_rate > 0 and self._random.random() < self.sample_rate

    def submit(self, records: list[dict[str, Any]]) -> bool:
        """Queue records without waiting; False (and counted) when the writer is too far behind."""
        try:
            self._queue.put_nowait(records)
        except queue.Full:
            self.dropped += len(records)
            return False
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def current_file(self) -> Path:
        # One file per day and process: workers never interleave partial lines.
        return self.directory / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}.{os.getpid()}.jsonl"

    def _write_loop(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            item = self._queue.get()
            pending = [item]
            # Drain what else is waiting so one open/write/flush serves many requests.
            while not self._queue.empty() and len(pending) < 256:
                pending.append(self._queue.get_nowait())
            stop = any(entry is _STOP for entry in pending)
            lines = [json.dumps(record) for entry in pending if entry is not _STOP for record in entry]
            if lines:
                with self.current_file().open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
            if stop:
                return
