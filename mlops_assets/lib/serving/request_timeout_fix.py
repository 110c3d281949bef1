"""A fix for BentoML's request timeout, which keeps every request's timer (and what it holds) alive for the timeout.

BentoML 1.4's `TimeoutMiddleware` schedules `loop.call_later(timeout, ...)` per request and never cancels it, so
a worker holds a live timer, with a future and a copy of the request's context, for every request of the last
`timeout` seconds (`test_request_timeout_fix.py` shows them). Memory grew and every full garbage collection
scanned them all, so p99 rose the longer the load lasted. The timeout cannot be switched off (BentoML requires it
to be > 0), so the service swaps in a `__call__` that behaves the same without a timer per request: each request's
deadline joins a queue, and one timer per worker (`RequestDeadlines`), running only while requests are waiting for
their answer, cancels the requests past their deadline. It also runs the request in the caller's task: BentoML's
starts a second task per request only to wait on it. A timer per request, even one cancelled when the request ends
(`asyncio.timeout`), took twice this middleware's own time per request (`benchmarks/results/request_path.md`).
"""

from __future__ import annotations

import asyncio
import collections
import typing

from starlette.responses import JSONResponse

# How late past its deadline a request may be cancelled, as a share of the timeout, and at most in seconds: the
# worker's timer checks the queue this often while requests wait.
CHECK_SHARE = 0.1
MAX_CHECK_INTERVAL_S = 1.0


class _Deadline:
    """One request's place in the queue."""

    __slots__ = ("at", "task", "answering", "expired")

    def __init__(self, at: float, task: asyncio.Task) -> None:
        self.at = at
        self.task: asyncio.Task | None = task
        # Set when the answer starts (no longer timed) or the request ended; the queue then drops it.
        self.answering = False
        # Set when the timer cancelled the request's task for its deadline.
        self.expired = False


class RequestDeadlines:
    """The deadlines of one event loop's requests, in arrival order, and the one timer that enforces them.

    With one timeout for every request, arrival order is deadline order, so the timer only looks at the front of the
    queue: requests that are answering or done leave, and those past their deadline are cancelled. A request is
    cancelled between its deadline and one check interval after it.
    """

    def __init__(self, timeout_s: float, loop: asyncio.AbstractEventLoop) -> None:
        self.timeout_s = timeout_s
        self.loop = loop
        self.interval_s = min(MAX_CHECK_INTERVAL_S, timeout_s * CHECK_SHARE)
        self._queue: collections.deque[_Deadline] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task) -> _Deadline:
        deadline = _Deadline(self.loop.time() + self.timeout_s, task)
        self._queue.append(deadline)
        if self._timer is None:
            self._timer = self.loop.call_later(self.interval_s, self._check)
        return deadline

    def _check(self) -> None:
        now = self.loop.time()
        queue = self._queue
        while queue and (queue[0].answering or queue[0].at <= now):
            deadline = queue.popleft()
            if not deadline.answering and deadline.task is not None:
                deadline.expired = True
                deadline.task.cancel()
        # No timer while no request waits: an idle worker schedules nothing.
        self._timer = self.loop.call_later(self.interval_s, self._check) if queue else None


def _deadlines(middleware: typing.Any) -> RequestDeadlines:
    """The middleware's deadlines on the running loop (a loop's own: a middleware may outlive a loop in tests)."""
    loop = asyncio.get_running_loop()
    deadlines = middleware.__dict__.get("_request_deadlines")
    if deadlines is None or deadlines.loop is not loop:
        deadlines = middleware.__dict__["_request_deadlines"] = RequestDeadlines(middleware.timeout, loop)
    return deadlines


async def _call_with_cancelled_timer(self: typing.Any, scope: dict, receive: typing.Callable, send: typing.Callable):
    """What BentoML's TimeoutMiddleware.__call__ does: a request that has not started its answer `self.timeout`
    seconds after it arrived (at most one check interval more) is cancelled and answered 504; once the answer
    starts, it is no longer timed (streams run on). Nothing outlives the request, and a request that fails before
    answering fails at once. One difference, as with `asyncio.timeout`: an app that catches the cancellation and
    goes on answers as it chooses (BentoML would answer 504 at the deadline regardless); the service's own code
    never catches it."""
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    task = asyncio.current_task()
    # As asyncio.timeout does: only a cancellation beyond those already pending on the task is the deadline's.
    cancelling = task.cancelling()
    deadline = _deadlines(self).add(task)

    async def send_and_disarm(message: dict) -> None:
        deadline.answering = True
        await send(message)

    try:
        await self.app(scope, receive, send_and_disarm)
    except asyncio.CancelledError:
        if not deadline.expired or task.uncancel() > cancelling:
            raise  # cancelled from outside (the client left, the server stops): not the request timeout
        message = {"error": f"Not able to process the request in {self.timeout} seconds"}
        await JSONResponse(message, status_code=504)(scope, receive, send)
    except BaseException:
        if deadline.expired:  # the app turned the cancellation into an error of its own: that error is the answer
            task.uncancel()
        raise
    else:
        if deadline.expired:  # the app absorbed the cancellation and answered anyway
            task.uncancel()
    finally:
        deadline.answering = True
        deadline.task = None


def cancel_request_timers() -> None:
    """Patch BentoML's TimeoutMiddleware in this process (idempotent); call before the server takes requests."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    TimeoutMiddleware.__call__ = _call_with_cancelled_timer
