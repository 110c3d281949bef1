"""ASGI middleware that refuses unauthenticated, mistyped or oversized prediction requests before they are read."""

from __future__ import annotations

import hmac
import json
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class GuardedRoute:
    """A prediction endpoint: the content types it accepts, how large its body may be, which file field it reads."""

    content_types: tuple[str, ...]
    max_body_bytes: int
    example: str
    # For multipart routes: the only field allowed, and only as files (BentoML would otherwise fetch URLs given
    # as text fields, and answers 500 to binary parts under other names).
    file_field: str | None = None


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str


def media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def accepts(route: GuardedRoute, content_type: str) -> bool:
    return any(
        content_type == allowed or (allowed.endswith("/*") and content_type.startswith(allowed[:-1]))
        for allowed in route.content_types
    )


def check_request(route: GuardedRoute, headers: Mapping[str, str], api_key: str | None) -> Refusal | None:
    """Why a request must be refused before its body is read, or None when it may proceed."""
    if api_key:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        # Constant-time comparison: response timing must not reveal how much of a guessed key matched.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), api_key.encode()):
            return Refusal(401, "Missing or wrong API key: send the header 'Authorization: Bearer <key>'.")
    content_type = media_type(headers)
    if not accepts(route, content_type):
        return Refusal(
            415,
            f"Content-Type {content_type or '(none)'!r} is not accepted here; "
            f"use {' or '.join(route.content_types)}, e.g. {route.example}.",
        )
    length = headers.get("content-length")
    if length is None:
        return Refusal(411, "Send a Content-Length header; streamed (chunked) uploads are not accepted.")
    if not length.isdigit():
        return Refusal(400, f"Content-Length {length!r} is not a number of bytes.")
    if int(length) == 0:
        return Refusal(400, f"The request body is empty; send an image, e.g. {route.example}.")
    if int(length) > route.max_body_bytes:
        return Refusal(413, f"The request body is {int(length):,} bytes, above the limit of {route.max_body_bytes:,}.")
    return None


_PART_NAME = re.compile(rb'name="([^"]*)"')


def check_body(route: GuardedRoute, headers: Mapping[str, str], body: bytes) -> Refusal | None:
    """Refuses bodies BentoML would mishandle: URLs instead of image bytes, stray or non-file multipart parts."""
    if body[:8].lower().startswith((b"http://", b"https://")):
        return Refusal(400, "The body is a URL; send the image bytes themselves (this service does not fetch URLs).")
    if route.file_field is None:
        return None
    _, _, boundary = headers.get("content-type", "").partition("boundary=")
    boundary = boundary.split(";")[0].strip().strip('"')
    if not boundary:
        return Refusal(400, "The multipart Content-Type has no boundary; let your HTTP client build the form.")
    delimiter = b"--" + boundary.encode("latin-1") + b"\r\n"
    start = body.find(delimiter)
    if start < 0:
        return Refusal(400, f"No form parts found; send files in the multipart field {route.file_field!r}.")
    while start >= 0:
        header_end = body.find(b"\r\n\r\n", start)
        part_headers = body[start + len(delimiter) : header_end if header_end >= 0 else len(body)]
        name = _PART_NAME.search(part_headers)
        field = name.group(1).decode("latin-1") if name else ""
        if field != route.file_field or b"filename=" not in part_headers:
            return Refusal(
                400,
                f"Unexpected form part {field!r}: send each image as a file in the field {route.file_field!r}.",
            )
        start = body.find(delimiter, header_end if header_end >= 0 else len(body))
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class RequestGuard:
    """Applies `check_request` to the guarded routes (POST only); every other path, health checks included, passes."""

    def __init__(self, app: ASGIApp, routes: Mapping[str, GuardedRoute], api_key_env: str) -> None:
        self.app = app
        self.routes = dict(routes)
        # Read when the server builds its app, not at import: the key is a runtime secret, never part of the bento.
        self.api_key = os.environ.get(api_key_env) or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        refusal = check_request(route, headers, self.api_key)
        if refusal is None:
            # Content-Length was checked against the route's limit, so holding the body in memory is bounded.
            body = await _read_body(receive)
            refusal = check_body(route, headers, body)
        if refusal is None:
            await self.app(scope, _replay(body, receive), send)
            return
        body = json.dumps({"error": refusal.message}).encode()
        response_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if refusal.status == 401:
            response_headers.append((b"www-authenticate", b"Bearer"))
        await send({"type": "http.response.start", "status": refusal.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive_next: Receive) -> Receive:
    """A `receive` that hands the already-read body to the app once, then reports the real connection's events."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive_next()

    return receive
