"""A fix for BentoML's request timeout, which keeps every request's timer (and what it holds) alive for the timeout.

BentoML 1.4's `TimeoutMiddleware` schedules `loop.call_later(timeout, ...)` per request and never cancels it, so
a worker holds a live timer, with a future and a copy of the request's context, for every request of the last
`timeout` seconds (`test_request_timeout_fix.py` shows them). Memory grew and every full garbage collection
scanned them all, so p99 rose the longer the load lasted. The timeout cannot be switched off (BentoML requires it
to be > 0), so the service swaps in a `__call__` that behaves the same with `asyncio.timeout`, whose timer ends
with the request. It also runs the request in the caller's task: BentoML's starts a second task per request only
to wait on it.
"""

from __future__ import annotations

import asyncio
import typing

from starlette.responses import JSONResponse


async def _call_with_cancelled_timer(self: typing.Any, scope: dict, receive: typing.Callable, send: typing.Callable):
    """BentoML's TimeoutMiddleware.__call__: a request that has not started its answer `self.timeout` seconds after
    it arrived is cancelled and answered 504; once the answer starts, it is no longer timed (streams run on). The
    timer is cancelled when the request ends, and a request that fails before answering fails at once."""
    if scope["type"] not in ("http", "websocket"):
        return await self.app(scope, receive, send)
    started = False
    deadline = asyncio.timeout(self.timeout)
    try:
        async with deadline:

            async def send_and_disarm(message: dict) -> None:
                nonlocal started
                if not started:
                    started = True
                    deadline.reschedule(None)
                await send(message)

            await self.app(scope, receive, send_and_disarm)
    except TimeoutError:
        if not deadline.expired():  # raised by the app itself: not the request timeout
            raise
        message = {"error": f"Not able to process the request in {self.timeout} seconds"}
        await JSONResponse(message, status_code=504)(scope, receive, send)


def cancel_request_timers() -> None:
    """Patch BentoML's TimeoutMiddleware in this process (idempotent); call before the server takes requests."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    TimeoutMiddleware.__call__ = _call_with_cancelled_timer
