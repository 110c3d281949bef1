"""Sampled prediction records for monitoring, appended as JSON lines by a background thread."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import threading
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# A bounded backlog: if the disk stalls, records are dropped (and counted) rather than holding requests or memory.
_QUEUE_LIMIT = 10_000
# How often the writer wakes to append what was submitted (records reach the file within about this long).
FLUSH_INTERVAL_S = 0.5


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
    """Samples requests at `sample_rate` and appends their records under `directory`, off the request path.

    Submitting only appends to an in-memory backlog; a writer thread wakes every `flush_interval_s` and appends the
    whole backlog at once. Waking the writer per record instead made it compete with the event loop for the GIL on
    every sampled request.
    """

    def __init__(
        self, directory: Path, sample_rate: float, seed: int | None = None, flush_interval_s: float = FLUSH_INTERVAL_S
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"prediction log sample rate must be within [0, 1], got {sample_rate}.")
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be positive, got {flush_interval_s}.")
        self.directory = directory
        self.sample_rate = sample_rate
        self.flush_interval_s = flush_interval_s
        self.dropped = 0
        self._random = random.Random(seed)
        # Appended on the event loop, emptied by the writer: deque appends and pops are atomic, so no lock is taken
        # (and no thread woken) per record.
        self._backlog: deque[list[dict[str, Any]]] = deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="prediction-log", daemon=True)
        self._thread.start()

    def should_sample(self) -> bool:
        """Decide once per request, so a sampled request logs all of its images."""
        return self.sample_rate > 0 and self._random.random() < self.sample_rate

    def submit(self, records: list[dict[str, Any]]) -> bool:
        """Queue records without waiting; False (and counted) when the writer is too far behind."""
        if len(self._backlog) >= _QUEUE_LIMIT:
            self.dropped += len(records)
            return False
        self._backlog.append(records)
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        self._stopping.set()
        self._thread.join(timeout_s)

    def current_file(self) -> Path:
        # One file per day and process: workers never interleave partial lines.
        return self.directory / f"{dt.datetime.now(dt.UTC):%Y-%m-%d}.{os.getpid()}.jsonl"

    def _write_loop(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            stopping = self._stopping.wait(self.flush_interval_s)
            # One open/write for everything submitted since the last wake-up.
            lines = []
            while self._backlog:
                lines += [json.dumps(record) for record in self._backlog.popleft()]
            if lines:
                with self.current_file().open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
            if stopping:
                return
