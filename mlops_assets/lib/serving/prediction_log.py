"""Sampled prediction records for monitoring, appended as JSON lines by a background thread to a prediction store
(a folder, or GCS: prediction_store.py)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlops_assets.lib.serving.prediction_store import UNSTAGED, FolderPredictionStore, PredictionStore, log_file_name

logger = logging.getLogger(__name__)

# A bounded backlog: if the disk stalls, records are dropped (and counted) rather than holding requests or memory.
_QUEUE_LIMIT = 10_000
# How often the writer wakes to append what was submitted (records reach the file within about this long).
FLUSH_INTERVAL_S = 0.5
# Seconds before a closed file the store could not take is offered again (where the store does not rotate).
RETRY_INTERVAL_S = 60.0


def prediction_record(
    model_version: str,
    label: str,
    confidence: float,
    statistics: Mapping[str, Any],
    endpoint: str,
    request_id: str = "",
    index: int = 0,
    embedding: list[float] | None = None,
    stage: str = UNSTAGED,
) -> dict[str, Any]:
    """One logged prediction: the input's statistics (as validation computes them), the answer and the model, the
    deployment `stage` whose server answered, and which request (`request_id`, the image's `index` in it) it
    answered, so feedback can name it; with the model's (compacted) embedding of the input when one is given."""
    extra = {} if embedding is None else {"embedding": embedding}
    return {
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "stage": stage,
        "model_version": model_version,
        "endpoint": endpoint,
        "request_id": request_id,
        "index": index,
        "label": label,
        "confidence": round(float(confidence), 6),
        **statistics,
        **extra,
    }


class PredictionLog:
    """Samples requests at `sample_rate` and appends their records to files in `store`, off the request path.

    Submitting only appends to an in-memory backlog; a writer thread wakes every `flush_interval_s` and appends the
    whole backlog at once. Waking the writer per record instead made it compete with the event loop for the GIL on
    every sampled request. The writer closes its file when the day changes, after the store's `rotate_interval_s`,
    and at `close()`, and hands each closed file to the store (GCS uploads it); a file the store cannot take now is
    kept and offered again at the next rotation. `store` may be a folder (Path): the files stay there. Each file's
    name carries the server's deployment `stage`, so readers pick one stage's files by name.
    """

    def __init__(
        self,
        store: PredictionStore | Path,
        sample_rate: float,
        seed: int | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
        stage: str = UNSTAGED,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"prediction log sample rate must be within [0, 1], got {sample_rate}.")
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be positive, got {flush_interval_s}.")
        self.store: PredictionStore = FolderPredictionStore(store) if isinstance(store, Path) else store
        self.directory = self.store.spool
        self.sample_rate = sample_rate
        self.stage = stage
        self.flush_interval_s = flush_interval_s
        self.dropped = 0
        self._random = random.Random(seed)
        # Appended on the event loop, emptied by the writer: deque appends and pops are atomic, so no lock is taken
        # (and no thread woken) per record.
        self._backlog: deque[list[dict[str, Any]]] = deque()
        # The writer's open file and when it was opened (monotonic clock); closed files the store has not taken.
        self._open: Path | None = None
        self._opened_at = 0.0
        self._unpublished: list[Path] = []
        self._retry_at = 0.0
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
        """Write what is queued, close the file and hand it to the store, then stop the writer."""
        self._stopping.set()
        self._thread.join(timeout_s)

    def current_file(self) -> Path:
        """The file records are appended to now (one per day, stage and process; with rotation, one per interval)."""
        now = dt.datetime.now(dt.UTC)
        if self._open is not None and self._open.name.startswith(f"{now:%Y-%m-%d}") and not self._rotation_due():
            return self._open
        if self._open is not None:
            self._close_current()
        # Workers never interleave partial lines: the process id is in the name.
        stamp = f"{now:%Y-%m-%d}" if self.store.rotate_interval_s is None else f"{now:%Y-%m-%dT%H%M%S.%fZ}"
        self._open, self._opened_at = self.directory / log_file_name(stamp, self.stage, os.getpid()), time.monotonic()
        return self._open

    def _rotation_due(self) -> bool:
        interval = self.store.rotate_interval_s
        return interval is not None and time.monotonic() - self._opened_at >= interval

    def _close_current(self) -> None:
        if self._open is not None and self._open.exists():
            self._unpublished.append(self._open)
        self._open = None
        self._publish_closed()

    def _publish_closed(self) -> None:
        """Hand every closed file to the store; one it cannot take now stays for the next try."""
        waiting, self._unpublished = self._unpublished, []
        for path in waiting:
            try:
                self.store.publish(path)
            except Exception as error:  # the writer must outlive a failed upload; the file is kept
                logger.warning("Prediction log %s not kept in %s yet (%s); will try again.", path, self.store, error)
                self._unpublished.append(path)
        if self._unpublished:
            self._retry_at = time.monotonic() + (self.store.rotate_interval_s or RETRY_INTERVAL_S)

    def _write_loop(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        # Files a killed writer left closed in the spool are published first.
        self._unpublished += self.store.leftovers()
        self._publish_closed()
        while True:
            stopping = self._stopping.wait(self.flush_interval_s)
            # One open/write for everything submitted since the last wake-up.
            lines = []
            while self._backlog:
                lines += [json.dumps(record) for record in self._backlog.popleft()]
            if lines:
                with self.current_file().open("a", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
            elif self._open is not None and self._rotation_due():
                self._close_current()  # a quiet server's last records still reach the store
            elif self._unpublished and time.monotonic() >= self._retry_at:
                self._publish_closed()
            if stopping:
                self._close_current()
                return
