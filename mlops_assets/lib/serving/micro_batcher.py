"""Adaptive batching inside one serving process: the images of concurrent requests share forward passes."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np


class Overloaded(RuntimeError):
    """A request waited in the queue longer than the latency bound; the caller should answer 503."""


@dataclass
class _Job:
    inputs: np.ndarray
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Runs `forward` on one dedicated thread; requests that arrive while it is busy form the next batch.

    The window adapts to traffic without a timer: an idle batcher dispatches a request at once (nothing is added
    to latency at low load), and under load the next batch holds whatever arrived during the current forward pass,
    up to `max_batch_size` images, so batches grow exactly as fast as requests arrive. A request still queued
    `max_latency_ms` after it arrived is refused with `Overloaded` (load shedding) instead of being served late.
    The forward pass runs off the event loop, so decoding the next requests overlaps it (torch releases the GIL).

    With `inline_when_idle`, a request that finds the batcher idle and comes from the same `source` as the request
    before it (the caller passes the client's connection) is computed right there on the event loop instead of on
    the worker thread. As far as this process can tell there is one client, so there is nothing to batch, and the
    lone client skips two thread hand-offs per request (a wake-up of the worker thread and one of the event loop),
    which cost about as much as a small model's forward pass. Before computing, the request lets those already
    waiting to run on the event loop reach the batcher (one pass of the loop); if any did, they all go to the worker
    thread as a batch. Under load, consecutive requests come from different connections, and every pass runs on the
    worker thread as without the option.

    Every method is called on the event loop's thread; `forward` runs on the worker thread, or inline as above.
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        max_latency_ms: float,
        on_batch: Callable[[int, float], None] | None = None,
        inline_when_idle: bool = False,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}.")
        if max_latency_ms <= 0:
            raise ValueError(f"max_latency_ms must be positive, got {max_latency_ms}.")
        self._forward = forward
        self.max_batch_size = max_batch_size
        self._max_wait_s = max_latency_ms / 1000
        self._on_batch = on_batch
        self.inline_when_idle = inline_when_idle
        self._queue: deque[_Job] = deque()
        self._busy = False
        # Where the previous request came from (for `inline_when_idle`).
        self._last_source: object = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")

    @property
    def has_pending_work(self) -> bool:
        """A forward pass is running or requests are queued for the next one."""
        return self._busy or bool(self._queue)

    async def predict(self, inputs: np.ndarray, source: object = None) -> np.ndarray:
        """`forward(inputs)`, computed together with other requests' inputs; a request above the bound is split.

        `source` says where the request came from (a client connection, compared with ==); None is never the same.
        """
        if self._closed:
            raise RuntimeError("The batcher is closed (the server is shutting down); send the request again.")
        if len(inputs) == 0:
            raise ValueError("predict() needs at least one input.")
        if len(inputs) > self.max_batch_size:
            pieces = [
                asyncio.ensure_future(self.predict(inputs[start : start + self.max_batch_size]))
                for start in range(0, len(inputs), self.max_batch_size)
            ]
            try:
                return np.concatenate(await asyncio.gather(*pieces))
            except BaseException:
                for piece in pieces:  # one piece failed or was shed: the others would be computed for nobody
                    piece.cancel()
                raise
        loop = asyncio.get_running_loop()
        job = _Job(inputs, loop.create_future())
        self._queue.append(job)
        previous, self._last_source = self._last_source, source
        if self._busy:
            return await job.future
        if self.inline_when_idle and source is not None and source == previous:
            return await self._inline_unless_joined(loop, job)
        self._dispatch(loop)
        return await job.future

    async def _inline_unless_joined(self, loop: asyncio.AbstractEventLoop, job: _Job) -> np.ndarray:
        """`forward(job.inputs)` here on the event loop if no other request joined during one pass of the loop;
        otherwise the queue goes to the worker thread as a batch."""
        self._busy = True  # requests that run during the pass queue behind this one
        try:
            await asyncio.sleep(0)
        except BaseException:  # cancelled (the client went away): whoever joined is still served
            job.future.cancel()
            self._dispatch(loop)
            raise
        if len(self._queue) > 1 or self._closed:
            self._dispatch(loop)
            return await job.future
        self._queue.popleft()
        try:
            outputs = self._forward(job.inputs)
        finally:
            # Nothing ran on the loop during the forward pass, so nothing can have queued behind it.
            self._busy = False
        if len(outputs) != len(job.inputs):
            raise RuntimeError(f"the model returned {len(outputs)} rows for a batch of {len(job.inputs)} inputs")
        if self._on_batch is not None:
            self._on_batch(len(job.inputs), time.monotonic() - job.enqueued)
        return outputs

    def close(self) -> None:
        """Wait for the running forward pass and stop the worker thread; queued requests are cancelled."""
        self._closed = True
        while self._queue:
            self._queue.popleft().future.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _next_batch(self) -> list[_Job]:
        now = time.monotonic()
        jobs: list[_Job] = []
        size = 0
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # the client went away (cancelled): no work for it
                self._queue.popleft()
                continue
            if now - job.enqueued > self._max_wait_s:
                self._queue.popleft()
                job.future.set_exception(
                    Overloaded(
                        f"the request waited {1000 * (now - job.enqueued):.0f} ms for the model, above the "
                        f"{1000 * self._max_wait_s:.0f} ms bound; the service is overloaded, retry later"
                    )
                )
                continue
            if jobs and size + len(job.inputs) > self.max_batch_size:
                break
            jobs.append(self._queue.popleft())
            size += len(job.inputs)
        return jobs

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._closed:
            self._busy = False
            return
        jobs = self._next_batch()
        if not jobs:
            self._busy = False
            return
        self._busy = True
        batch = jobs[0].inputs if len(jobs) == 1 else np.concatenate([job.inputs for job in jobs])
        waited_s = time.monotonic() - jobs[0].enqueued
        running = self._executor.submit(self._forward, batch)
        running.add_done_callback(lambda done: self._hand_back(loop, jobs, done, len(batch), waited_s))

    def _hand_back(
        self, loop: asyncio.AbstractEventLoop, jobs: list[_Job], done: Future, size: int, waited_s: float
    ) -> None:
        """On the worker thread: schedule `_finish` on the event loop, unless the loop is already gone (shutdown)."""
        if not loop.is_closed():
            loop.call_soon_threadsafe(self._finish, loop, jobs, done, size, waited_s)

    def _finish(
        self, loop: asyncio.AbstractEventLoop, jobs: list[_Job], done: Future, size: int, waited_s: float
    ) -> None:
        try:
            try:
                outputs = done.result()
                if len(outputs) != size:
                    raise RuntimeError(f"the model returned {len(outputs)} rows for a batch of {size} inputs")
            except BaseException as error:  # noqa: BLE001 - handed to every caller of this batch, none is lost
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                return
            start = 0
            for job in jobs:
                end = start + len(job.inputs)
                if not job.future.done():
                    job.future.set_result(outputs[start:end])
                start = end
            if self._on_batch is not None:
                self._on_batch(size, waited_s)
        finally:
            # Whatever happened above (a failed pass, a failing metrics callback), the queue keeps moving.
            self._dispatch(loop)
