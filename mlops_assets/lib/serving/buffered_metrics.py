"""Prometheus updates of a serving worker, written to the shared metric files in batches instead of one by one.

With several workers, Prometheus' Python client runs in multiprocess mode: every counter increment, gauge change and
histogram observation takes a process-wide lock and writes the new value into the worker's memory-mapped metric
file, where `/metrics` reads every worker's values. A prediction makes about fourteen such writes (BentoML's request
count, duration, in-progress gauge and last-request time, the service's confidence, per-label, decode and batch
metrics), a few microseconds each on the event loop, for a small model's request of well under a millisecond.

`buffer_metric_writes()` makes those updates queue instead (an append, atomic under the GIL, from any thread), and a
writer thread applies the queue every `FLUSH_INTERVAL_S`: all the updates of one series in the interval become one
write, with the value the updates would have written one by one (increments summed; a set, and what follows it).
`/metrics` therefore shows an update within about one interval: Prometheus scrapes every 15 s or more. Reading a
value in the process (`get()`) applies the queue first. The queue is applied when the worker shuts down; a worker
killed outright (SIGKILL, the OOM killer) loses the updates of its last interval, which one write per update kept.
A series whose write fails is logged and queued again for the next interval (the others are written). A process
forked from a buffering one writes its updates one by one again (it has no writer thread, and the parent's queue
is the parent's to write). In single-process mode (no PROMETHEUS_MULTIPROC_DIR) an update is only a lock and an
addition, and nothing changes.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import typing

FLUSH_INTERVAL_S = 0.1
logger = logging.getLogger(__name__)

_buffer: MetricWriteBuffer | None = None


class MetricWriteBuffer:
    """The queue of updates to multiprocess metric values and the thread that applies it.

    `write_inc(value, amount)` and `write_set(value, number, timestamp)` are the value class's own methods, which
    write to the metric file.
    """

    def __init__(self, write_inc: typing.Callable, write_set: typing.Callable, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"the flush interval must be positive, got {interval_s}")
        self._write_inc, self._write_set = write_inc, write_set
        self.interval_s = interval_s
        # (value, None, amount) for an increment, (value, timestamp, number) for a set.
        self._updates: collections.deque[tuple[typing.Any, float | None, float]] = collections.deque()
        # Applying is serialized: the writer thread, a reader's `get()` and shutdown may flush at once.
        self._flushing = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._write_loop, name="metric-writes", daemon=True)
        self._thread.start()

    def flush(self) -> None:
        """Write every queued update: one write per series, with the value its updates add up to."""
        with self._flushing:
            # Per value: [set, number, timestamp]; set False means `number` is an increment.
            pending: dict[typing.Any, list] = {}
            updates = self._updates
            while updates:
                value, timestamp, number = updates.popleft()
                state = pending.get(value)
                if timestamp is not None:  # a set replaces whatever came before it
                    pending[value] = [True, number, timestamp]
                elif state is None:
                    pending[value] = [False, number, 0.0]
                else:  # an increment after a set is applied to the set value, as one by one
                    state[1] += number
                    state[2] = 0.0
            failed: list[tuple[typing.Any, float | None, float]] = []
            error: Exception | None = None
            for value, (is_set, number, timestamp) in pending.items():
                try:
                    if is_set:
                        self._write_set(value, number, timestamp or None)
                    else:
                        self._write_inc(value, number)
                except Exception as failure:  # one file that cannot be written must not cost the other series
                    error = failure
                    failed.append((value, timestamp if is_set else None, number))
            if failed:
                # Ahead of anything queued meanwhile: these updates came first.
                updates.extendleft(reversed(failed))
                logger.warning(
                    "Writing %d metric series failed (%s: %s); they are queued for the next try.",
                    len(failed),
                    type(error).__name__,
                    error,
                )

    def close(self) -> None:
        """Apply what is queued and stop the writer thread."""
        self._stopping.set()
        self._thread.join(timeout=5)
        self.flush()

    def _write_loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.flush()
            except Exception:  # a metric file that cannot be written must not stop the metrics that can
                logger.exception("Writing the queued metric updates failed; will try again.")


def buffer_metric_writes(interval_s: float = FLUSH_INTERVAL_S) -> MetricWriteBuffer | None:
    """Queue this process's multiprocess metric updates (see the module); idempotent. Returns the buffer, or None in
    single-process mode. Call before the server takes requests."""
    global _buffer
    from prometheus_client import values

    value_class = values.ValueClass
    if not getattr(value_class, "_multiprocess", False):
        return None
    if _buffer is not None:
        return _buffer
    write_inc, write_set, read = value_class.inc, value_class.set, value_class.get
    buffer = MetricWriteBuffer(write_inc, write_set, interval_s)
    updates = buffer._updates

    # Plain functions, so they bind to the value as its methods; each is one append.
    def inc(value: typing.Any, amount: float) -> None:
        updates.append((value, None, amount))

    def set_value(value: typing.Any, number: float, timestamp: float | None = None) -> None:
        updates.append((value, timestamp or 0.0, number))

    def get(value: typing.Any) -> float:
        buffer.flush()
        return read(value)

    value_class.inc, value_class.set, value_class.get = inc, set_value, get
    atexit.register(buffer.close)

    def unbuffer_in_child() -> None:
        global _buffer
        value_class.inc, value_class.set, value_class.get = write_inc, write_set, read
        updates.clear()
        _buffer = None

    os.register_at_fork(after_in_child=unbuffer_in_child)
    _buffer = buffer
    return buffer
