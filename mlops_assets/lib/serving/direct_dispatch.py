"""Answers guarded prediction requests by calling the service's handler directly, without BentoML's per-request
API layer.

Between its middleware and the service's method, BentoML spends on every request: a request context, Starlette's
exception middleware and router (a match against every route), the API wrapper, parsing the body again (a multipart
body into temporary-file uploads), validating the input model with pydantic, binding the method's signature with
`inspect`, and scheduling a background task to close the request (its share of a request's time is in
`benchmarks/results/serving_profile.md`, "BentoML API layer"). The request guard has already read,
checked and parsed the body (`GuardedBody`), so for a request the service can answer from that, the rest is only
overhead. Everything outside the service's middleware stays BentoML's (server, workers, request metrics, tracing,
the timeout); a request the handler does not take (it returns None) goes through BentoML's API layer as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from starlette.responses import JSONResponse, Response

from mlops_assets.lib.serving.request_guard import GUARDED_BODY, GuardedBody

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# (the request's ASGI scope, what the guard read) -> the answer, or None for "let BentoML's API layer answer".
Handler = Callable[[Scope, GuardedBody], Awaitable[Response | None]]
# BentoML's answer to an exception escaping an API method (its API wrapper), kept for answers given here.
UNEXPECTED_ERROR = "An unexpected error has occurred, please check the server log."
logger = logging.getLogger("bentoml.image_classifier")


class DirectDispatch:
    """ASGI middleware, inside the request guard: a guarded request goes to `handler()`'s coroutine; its answer gets
    `headers()` (what BentoML's API layer adds to every answer). Requests without a `GuardedBody`, and those the
    handler returns None for, pass to the app untouched.

    `handler()` is called on the first guarded request (the service instance is created after the middleware stack
    is built) and its answer kept for the process's life.
    """

    def __init__(self, app: ASGIApp, handler: Callable[[], Handler], headers: Callable[[], Mapping[str, str]]) -> None:
        self.app = app
        self.find_handler = handler
        self.headers = headers
        self._handler: Handler | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope.get(GUARDED_BODY)
        if guarded is None:
            await self.app(scope, receive, send)
            return
        try:
            if self._handler is None:
                self._handler = self.find_handler()
            response = await self._handler(scope, guarded)
        except Exception:
            # What BentoML's API wrapper does with an exception from an API method: log it, answer a generic 500.
            logger.exception("Unexpected error answering %s %s", scope.get("method"), scope["path"])
            response = JSONResponse({"error": UNEXPECTED_ERROR}, status_code=500)
        if response is None:
            await self.app(scope, receive, send)
            return
        response.headers.update(self.headers())
        await response(scope, receive, send)
