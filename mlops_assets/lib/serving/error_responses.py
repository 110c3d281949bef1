"""One shape for every error answer of the service: a JSON object `{"error": "<what was wrong, what to do>"}`.

The service and the request guard answer in this shape themselves; `ErrorShape` rewrites the answers other layers
produce (BentoML's input validation with pydantic's `detail` list, BentoML's `[{"error": ...}]` for its own 4xx
exceptions, Starlette's plain-text 404 and 405) so a client parses one shape whatever refused its request.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def error_body(message: str) -> bytes:
    """The JSON body of an error answer (UTF-8; non-ASCII characters as written)."""
    return json.dumps({"error": message}, ensure_ascii=False).encode()


def is_error_body(body: bytes) -> bool:
    """Whether `body` is already exactly `{"error": "<non-empty message>"}`."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and list(document) == ["error"] and isinstance(document["error"], str)


def field_path(location: list | tuple) -> str:
    """pydantic's error location as the request's own path: `images[0]`, `(the body)` for the whole body."""
    text = ""
    for item in location:
        text += f"[{item}]" if isinstance(item, int) else (f".{item}" if text else str(item))
    return text or "(the body)"


def validation_message(errors: list) -> str:
    """pydantic's error list (BentoML's `detail`) as one sentence naming each wrong field and what is wrong."""
    items = [item for item in errors if isinstance(item, dict)]
    problems = [f"{field_path(item.get('loc', ()))}: {item.get('msg', 'invalid')}" for item in items]
    return "Invalid request: " + "; ".join(problems) + "."


def error_message(status: int, body: bytes, method: str, path: str, headers: Mapping[bytes, bytes]) -> str:
    """The message an error answer of another layer carries, phrased for the client."""
    if status == 404:
        return f"Nothing is served at {path}; the endpoints are listed at /docs."
    if status == 405:
        allowed = headers.get(b"allow", b"").decode("latin-1") or "another method"
        return f"{method} is not allowed on {path}; use {allowed}."
    try:
        document = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text or _reason(status)
    if isinstance(document, dict) and isinstance(document.get("detail"), list):
        return validation_message(document["detail"])
    if isinstance(document, list):
        messages = [str(item.get("error")) for item in document if isinstance(item, dict) and item.get("error")]
        return "; ".join(messages) or _reason(status)
    if isinstance(document, dict):
        for key in ("error", "detail", "message"):
            if isinstance(document.get(key), str) and document[key]:
                return document[key]
    return _reason(status)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class ErrorShape:
    """ASGI middleware: rewrites every error answer (status >= 400) not yet in the `{"error": ...}` shape.

    Only error answers are held back (they are small); every other answer streams through untouched. For routes in
    `examples`, validation errors end with an example of a valid request.
    """

    def __init__(self, app: ASGIApp, examples: Mapping[str, str] | None = None) -> None:
        self.app = app
        self.examples = dict(examples or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []

        async def shaping_send(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                start = message
                return
            if start is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._send_shaped(scope, start, b"".join(chunks), send)

        await self.app(scope, receive, shaping_send)

    async def _send_shaped(self, scope: Scope, start: dict, body: bytes, send: Send) -> None:
        if not is_error_body(body):
            headers = dict(start.get("headers", []))
            message = error_message(start["status"], body, scope.get("method", ""), scope.get("path", ""), headers)
            if start["status"] == 400 and (example := self.examples.get(scope.get("path", ""))):
                message = f"{message} A valid request: {example}."
            body = error_body(message)
            kept = [
                (name, value)
                for name, value in start.get("headers", [])
                if name.lower() not in (b"content-type", b"content-length")
            ]
            start = {
                **start,
                "headers": [
                    *kept,
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        await send(start)
        await send({"type": "http.response.body", "body": body})
