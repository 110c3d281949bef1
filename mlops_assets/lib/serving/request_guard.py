"""ASGI middleware that refuses unauthenticated, mistyped, oversized or malformed prediction requests.

The headers are checked before the body is read; the body is then read with its size counted as it arrives (a
declared Content-Length or a chunked stream alike), and multipart bodies are parsed with python-multipart, the
parser Starlette (so BentoML) uses afterwards, so the guard and the service see the same parts. A request that
passes goes on with what the guard read attached to its scope (`GuardedBody`, under `GUARDED_BODY`): the body, and
the image files it carries, so nothing downstream has to read or parse it again.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from mlops_assets.lib.serving.error_responses import error_body

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
    # For routes whose whole body is one file (an image sent as the raw body).
    body_is_file: bool = False


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    # Whether the connection must close after the answer: set when the client may still be sending a body that
    # will not be read.
    close: bool = False


@dataclass(frozen=True)
class FormPart:
    """One part of a multipart/form-data body, as Starlette will see it: `filename` None means a text field."""

    name: str | None
    filename: str | None
    # The part's content, exactly the bytes between its headers and the next boundary. Parts compare by their header
    # alone, which is what decides whether a request is accepted.
    data: bytes = field(default=b"", compare=False, repr=False)


@dataclass(frozen=True)
class GuardedBody:
    """What the guard read of a request it let through: the whole body, and for file routes the image files in it
    (each form part of the file field, in order, or the body itself); `files` is None for other routes (JSON)."""

    body: bytes
    files: list[bytes] | None


# The scope key a guarded request's `GuardedBody` travels under (ASGI lets middleware add keys to the scope).
GUARDED_BODY = "mlops_assets.guarded_body"


def media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", "").split(";")[0].strip().lower()


def accepts(route: GuardedRoute, content_type: str) -> bool:
    return any(
        content_type == allowed or (allowed.endswith("/*") and content_type.startswith(allowed[:-1]))
        for allowed in route.content_types
    )


def check_request(route: GuardedRoute, headers: Mapping[str, str], api_key: str | None) -> Refusal | None:
    """Why a request must be refused from its headers alone, or None when its body may be read.

    A Content-Length above the route's limit is refused here; a body without one (chunked) is bounded while it is
    read (`read_body`).
    """
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
        return None
    if not length.isdigit():
        return Refusal(400, f"Content-Length {length!r} is not a number of bytes.")
    if int(length) == 0:
        return _empty_body(route)
    if int(length) > route.max_body_bytes:
        return Refusal(
            413, f"The request body is {int(length):,} bytes, above the limit of {route.max_body_bytes:,}.", close=True
        )
    return None


async def read_body(receive: Receive, limit: int) -> bytes | Refusal:
    """The whole body, or a 413 as soon as more than `limit` bytes arrived (the rest is never read).

    Counting as the bytes arrive bounds chunked uploads, which declare no length, and bodies longer than their
    Content-Length alike, so at most `limit` bytes are ever held.
    """
    chunks = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            # Nobody is left to answer; the refusal only stops the request here.
            return Refusal(400, "The client disconnected before the request body was complete.")
        chunk = message.get("body", b"")
        received += len(chunk)
        if received > limit:
            return Refusal(
                413, f"The request body is above the limit of {limit:,} bytes; send a smaller request.", close=True
            )
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def form_parts(content_type: str, body: bytes) -> list[FormPart]:
    """The parts of a multipart/form-data body, named the way Starlette names them.

    Part headers are parsed, not pattern-matched: parameters in any order, quoted or not, with `filename*` next to
    `filename` (RFC 7578 section 4.2 keeps the plain `filename` authoritative, as Starlette does). Raises ValueError
    naming what is malformed.
    """
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise ValueError("The multipart Content-Type has no boundary; let your HTTP client build the form.")
    # Each part as (name, filename, content so far); the content arrives in pieces between its headers and the next
    # boundary.
    parts: list[tuple[str | None, str | None, bytearray]] = []
    headers: list[tuple[bytes, bytes]] = []
    header_field, header_value = bytearray(), bytearray()
    finished = False

    def on_header_end() -> None:
        headers.append((bytes(header_field).strip().lower(), bytes(header_value).strip()))
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        # The last Content-Disposition wins, as in Starlette.
        disposition = next((value for name, value in reversed(headers) if name == b"content-disposition"), b"")
        _, parameters = parse_options_header(disposition)
        parts.append((_text(parameters.get(b"name")), _text(parameters.get(b"filename")), bytearray()))
        headers.clear()

    def on_end() -> None:
        nonlocal finished
        finished = True

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": lambda data, start, end: header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: header_value.extend(data[start:end]),
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": lambda data, start, end: parts[-1][2].extend(data[start:end]),
            "on_end": on_end,
        },
    )
    try:
        parser.write(body)
    except FormParserError as error:
        raise ValueError(f"The multipart body is malformed ({error}); let your HTTP client build the form.") from error
    if not finished:
        raise ValueError(
            "The multipart body ends before its closing boundary; send the whole form (let your HTTP client build it)."
        )
    return [FormPart(name, filename, bytes(data)) for name, filename, data in parts]


def _text(value: bytes | None) -> str | None:
    # Starlette decodes part names as UTF-8 (falling back to Latin-1); the header itself arrives as Latin-1.
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def check_body(route: GuardedRoute, headers: Mapping[str, str], body: bytes) -> Refusal | None:
    """Refuses bodies BentoML would mishandle: empty, URLs instead of image bytes, stray or non-file form parts."""
    outcome = guarded_body(route, headers, body)
    return outcome if isinstance(outcome, Refusal) else None


def guarded_body(route: GuardedRoute, headers: Mapping[str, str], body: bytes) -> GuardedBody | Refusal:
    """`check_body`'s refusal, or the body with the image files it carries (see `GuardedBody`)."""
    if not body:
        return _empty_body(route)
    if body[:8].lower().startswith((b"http://", b"https://")):
        return Refusal(400, "The body is a URL; send the image bytes themselves (this service does not fetch URLs).")
    if route.file_field is None:
        return GuardedBody(body, [body] if route.body_is_file else None)
    try:
        parts = form_parts(headers.get("content-type", ""), body)
    except ValueError as error:
        return Refusal(400, str(error))
    if not parts:
        return Refusal(400, f"No form parts found; send files in the multipart field {route.file_field!r}.")
    for index, part in enumerate(parts):
        if part.name is None:
            return Refusal(
                400, f"A form part has no name; send each image as a file in the field {route.file_field!r}."
            )
        if part.name != route.file_field:
            return Refusal(
                400,
                f"Unexpected form part {part.name!r}: send each image as a file in the field {route.file_field!r}.",
            )
        if part.filename is None:
            return Refusal(
                400,
                f"Form part {index} of {route.file_field!r} is not a file: its Content-Disposition has no filename "
                "parameter (a filename* alone does not count, RFC 7578 section 4.2); send each image as a file.",
            )
    return GuardedBody(body, [part.data for part in parts])


def _empty_body(route: GuardedRoute) -> Refusal:
    return Refusal(400, f"The request body is empty; send an image, e.g. {route.example}.")


class RequestGuard:
    """Applies `check_request`, `read_body` and `check_body` to the guarded routes (POST only); every other
    request, health checks included, passes untouched. A request that passes carries its `GuardedBody` in the scope
    under `GUARDED_BODY`, and its body is replayed to the app."""

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
        outcome = check_request(route, headers, self.api_key) or await read_body(receive, route.max_body_bytes)
        if isinstance(outcome, bytes):
            outcome = guarded_body(route, headers, outcome)
            if isinstance(outcome, GuardedBody):
                await self.app({**scope, GUARDED_BODY: outcome}, _replay(outcome.body, receive), send)
                return
        await _send_refusal(send, outcome)


async def _send_refusal(send: Send, refusal: Refusal) -> None:
    body = error_body(refusal.message)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if refusal.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if refusal.close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
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
