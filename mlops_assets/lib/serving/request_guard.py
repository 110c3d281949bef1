"""ASGI middleware that refuses unauthenticated, mistyped, oversized or malformed prediction requests.

The headers are checked before the body is read; the body is then read with its size counted as it arrives (a
declared Content-Length or a chunked stream alike), and multipart bodies are parsed as they arrive (`FormReader`),
so a part above the per-file limit is refused as soon as it passes it. A request that passes goes on with what the
guard read attached to its scope (`GuardedBody`, under `GUARDED_BODY`): the body, and the image files it carries, so
nothing downstream has to read or parse it again.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message

import multipart

from mlops_assets.lib.serving.error_responses import error_body

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A Content-Type as HTTP clients write it: the boundary the only parameter, a token of RFC 2046's length.
_PLAIN_FORM_TYPE = re.compile(r"multipart/form-data;[ \t]*boundary=([0-9A-Za-z'+_.-]{1,70})[ \t]*", re.IGNORECASE)
# Headers one form part may carry: RFC 7578 allows three (Content-Disposition, Content-Type and the deprecated
# Content-Transfer-Encoding); clients add a few of their own (Content-Length). More is refused.
MAX_PART_HEADERS = 16
# Bytes one header line of a part may hold (its name and value): a Content-Disposition with a long filename fits.
MAX_PART_HEADER_BYTES = 8192


@dataclass(frozen=True)
class GuardedRoute:
    """A prediction endpoint: the content types it accepts, how large its body may be, which file field it reads."""

    content_types: tuple[str, ...]
    max_body_bytes: int
    example: str
    # For multipart routes: the only field allowed, and only as files (BentoML would otherwise fetch URLs given
    # as text fields, and answers 500 to binary parts under other names).
    file_field: str | None = None
    # For routes whose whole body is one file (an image sent as the raw body): `max_body_bytes` is then the limit
    # per file.
    body_is_file: bool = False
    # For multipart routes: the most bytes one part may carry (one image file), enforced while the body is parsed.
    max_part_bytes: int | None = None


@dataclass(frozen=True)
class Refusal:
    status: int
    message: str
    # Whether the connection must close after the answer: set when the client may still be sending a body that
    # will not be read.
    close: bool = False


@dataclass(frozen=True)
class FormPart:
    """One part of a multipart/form-data body: `name` None when it has none, `filename` None for a text field."""

    name: str | None
    filename: str | None
    # The part's content, exactly the bytes between its headers and the next boundary. Parts compare by their header
    # alone, which is what decides whether a request is accepted.
    data: bytes = field(default=b"", compare=False, repr=False)
    # The raw Content-Disposition value, to explain a refusal in terms of what the client sent.
    disposition: bytes = field(default=b"", compare=False, repr=False)


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
        return Refusal(413, _too_large(route, int(length)), close=True)
    return None


def _too_large(route: GuardedRoute, size: int | None = None) -> str:
    """The 413 message for a body above `route.max_body_bytes` (`size` when it was declared)."""
    what, advice = ("image", "a smaller image") if route.body_is_file else ("request body", "fewer or smaller images")
    per = "per image" if route.body_is_file else "per request"
    size_text = "" if size is None else f" {size:,} bytes,"
    return f"The {what} is{size_text} above the limit of {route.max_body_bytes:,} bytes {per}; send {advice}."


async def read_body(receive: Receive, route: GuardedRoute, form: FormReader | None = None) -> bytes | Refusal:
    """The whole body, or a 413 as soon as more than `route.max_body_bytes` arrived, or (with `form`, which parses
    the body as it arrives) as soon as one part passes its limit; the rest is never read.

    Counting as the bytes arrive bounds chunked uploads, which declare no length, and bodies longer than their
    Content-Length alike, so at most `max_body_bytes` bytes are ever held.
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
        if received > route.max_body_bytes:
            return Refusal(413, _too_large(route), close=True)
        if form is not None:
            try:
                form.write(chunk)
            except PartTooLarge as error:
                return Refusal(413, str(error), close=True)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class PartTooLarge(ValueError):
    """A form part passed the per-part limit while the body was parsed."""

    def __init__(self, index: int, filename: str | None, limit: int) -> None:
        name = f" ({filename!r})" if filename else ""
        super().__init__(
            f"Form part {index}{name} is above the limit of {limit:,} bytes per image; send a smaller image."
        )


class FormReader:
    """Parses a multipart/form-data body piece by piece as it arrives, into its parts.

    The parser is `multipart`'s push parser (RFC 7578; by Bottle's author): it finds boundaries and header lines
    with `bytes.find` instead of python-multipart's byte-by-byte state machine, which halved the guard's own time
    for a small image's request (benchmarks/results/request_path.md). Part headers are parsed, not pattern-matched:
    parameters in any order, quoted or not, with `filename*` next to `filename` (RFC 7578 section 4.2 keeps the
    plain `filename` authoritative). As RFC 2046 says, a preamble before the first boundary and an epilogue after
    the last are ignored. Raises ValueError for a Content-Type without a usable boundary; `write` raises
    PartTooLarge once a part holds more than `max_part_bytes`, and `parts` ValueError naming what is malformed.
    """

    def __init__(self, content_type: str, max_part_bytes: int | None = None) -> None:
        boundary = _boundary(content_type)
        if not boundary:
            raise ValueError("The multipart Content-Type has no boundary; let your HTTP client build the form.")
        try:
            # Header bytes decoded as Latin-1, which cannot fail; names and filenames are decoded as UTF-8 below.
            self._parser = multipart.PushMultipartParser(
                boundary,
                header_charset="latin1",
                max_header_count=MAX_PART_HEADERS,
                max_header_size=MAX_PART_HEADER_BYTES,
            )
        except multipart.MultipartError as error:
            raise ValueError(
                f"The multipart Content-Type's boundary {boundary!r} is not usable ({error}); let your HTTP client "
                "build the form."
            ) from None
        self._delimiter = b"--" + self._parser.boundary
        self.max_part_bytes = max_part_bytes
        # Each part's header and its content so far, in the pieces the parser gave it.
        self._parts: list[tuple[multipart.MultipartSegment, list[bytes]]] = []
        # Whether the boundary has appeared yet; while it has not, the body's last bytes (the boundary and the line
        # break before it may straddle pieces) and how many bytes came before them.
        self._seen_boundary = False
        self._tail = b""
        self._before_tail = 0
        self._error: str | None = None

    def write(self, chunk: bytes) -> None:
        """Parse the next piece of the body; raises PartTooLarge (nothing more should be read then)."""
        if self._error is not None or not chunk:
            return  # malformed already (the rest is only counted, `parts` says what was wrong), or nothing new
        if not self._seen_boundary:
            searched = self._tail + chunk
            found = searched.find(self._delimiter)
            if found < 0:
                self._tail = searched[-(len(self._delimiter) + 1) :]
                self._before_tail += len(searched) - len(self._tail)
            else:
                self._seen_boundary = True
                # The first boundary starts the body or a line (RFC 2046). The parser refuses anything else in a
                # whole body, but when the boundary arrives cut between two pieces it takes the first piece's part
                # for a preamble and would drop that part: refused here, however the body arrives.
                if self._before_tail + found > 0 and searched[found - 2 : found] != b"\r\n":
                    self._error = (
                        "The multipart body is malformed (bytes right before its first boundary, which must start "
                        "the body or a line); let your HTTP client build the form."
                    )
                    return
        try:
            for event in self._parser.parse(chunk):
                if isinstance(event, multipart.MultipartSegment):
                    self._parts.append((event, []))
                elif event is not None:  # None ends a part
                    segment, pieces = self._parts[-1]
                    pieces.append(event)
                    if self.max_part_bytes is not None and segment.bytes_received > self.max_part_bytes:
                        filename = _names(segment, _disposition(segment))[1]
                        raise PartTooLarge(len(self._parts) - 1, filename, self.max_part_bytes)
        except multipart.ParserLimitReached as error:
            self._error = (
                f"The multipart body is refused ({error}): a part may carry at most {MAX_PART_HEADERS} header lines "
                f"of at most {MAX_PART_HEADER_BYTES:,} bytes each; send shorter part headers (a shorter filename)."
            )
        except multipart.MultipartError as error:
            self._error = f"The multipart body is malformed ({error}); let your HTTP client build the form."

    def parts(self) -> list[FormPart]:
        """Every part of the whole body, once it has all been written; raises ValueError if it is malformed."""
        if self._error is not None:
            raise ValueError(self._error)
        if not self._parser.closed:
            try:
                self._parser.close()
            except multipart.MultipartError:
                if not self._seen_boundary:
                    # RFC 2046 boundaries are at most 70 characters: a longer one is described, not echoed.
                    boundary = self._parser.boundary.decode("latin-1")
                    shown = repr(boundary) if len(boundary) <= 70 else f"of {len(boundary)} characters"
                    raise ValueError(
                        f"The multipart body is malformed (no line in it starts with '--' and the boundary {shown} "
                        "its Content-Type names); let your HTTP client build the form."
                    ) from None
                raise ValueError(
                    "The multipart body ends before its closing boundary; send the whole form (let your HTTP "
                    "client build it)."
                ) from None
        return [_form_part(segment, pieces) for segment, pieces in self._parts]


def _form_part(segment: multipart.MultipartSegment, pieces: list[bytes]) -> FormPart:
    disposition = _disposition(segment)
    name, filename = _names(segment, disposition)
    return FormPart(name, filename, b"".join(pieces), disposition.encode("latin-1"))


def _disposition(segment: multipart.MultipartSegment) -> str:
    # The last Content-Disposition wins (the segment keeps the last one it parsed).
    return next((value for name, value in reversed(segment.headerlist) if name == "Content-Disposition"), "")


def _names(segment: multipart.MultipartSegment, disposition: str) -> tuple[str | None, str | None]:
    """A part's name (None when it has none or an empty one) and filename (None for a text field), decoded, from the
    parser's reading of its Content-Disposition value `disposition`."""
    name, filename = segment.name, segment.filename
    if not disposition.isascii():
        # The parser reads an unquoted value as an ASCII token, which would cut `name=imágenes` to "im" and miss
        # `filename=été.png`; the standard library's header parser reads them whole, quoted or not.
        name, filename = _parameter(disposition, "name"), _parameter(disposition, "filename")
    return _text(name) or None, _text(filename)


def _parameter(disposition: str, name: str) -> str | None:
    """Parameter `name` of a Content-Disposition value as the standard library reads it (None when absent, or when
    only its RFC 2231 form `name*` is there)."""
    return _header_parameter("content-disposition", disposition, name)


def _header_parameter(header: str, value: str, name: str) -> str | None:
    """Parameter `name` of header `header`'s `value`, read by the standard library's header parser (None when absent
    or only in its RFC 2231 form)."""
    message = Message()
    message[header] = value
    parameter = message.get_param(name, header=header)
    return parameter if isinstance(parameter, str) else None


def _boundary(content_type: str) -> str | None:
    """The boundary parameter of a multipart Content-Type (None when there is none).

    Any other shape (quoted, among other parameters, with characters RFC 2045 wants quoted but a client left
    unquoted) is read by the standard library's header parser, which is lenient where clients are sloppy; the
    plain shape every common client sends is matched directly, a twentieth of that parser's time."""
    plain = _PLAIN_FORM_TYPE.fullmatch(content_type)
    if plain is not None:
        return plain.group(1)
    return _header_parameter("content-type", content_type, "boundary") or None


def form_parts(content_type: str, body: bytes) -> list[FormPart]:
    """The parts of a whole multipart/form-data body (see `FormReader`); raises ValueError naming what is malformed."""
    reader = FormReader(content_type)
    reader.write(body)
    return reader.parts()


def _text(value: str | None) -> str | None:
    """A name or filename from a part header read as Latin-1, decoded as UTF-8 where it is (what browsers send),
    else kept as Latin-1, as Starlette decodes them."""
    if value is None:
        return None
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def check_body(route: GuardedRoute, headers: Mapping[str, str], body: bytes) -> Refusal | None:
    """Refuses bodies BentoML would mishandle: empty, URLs instead of image bytes, stray or non-file form parts."""
    outcome = guarded_body(route, headers, body)
    return outcome if isinstance(outcome, Refusal) else None


def guarded_body(
    route: GuardedRoute, headers: Mapping[str, str], body: bytes, form: FormReader | None = None
) -> GuardedBody | Refusal:
    """`check_body`'s refusal, or the body with the image files it carries (see `GuardedBody`); `form` is the
    reader that already parsed a multipart body while it was read (`read_body`)."""
    if not body:
        return _empty_body(route)
    if body[:8].lower().startswith((b"http://", b"https://")):
        return Refusal(400, "The body is a URL; send the image bytes themselves (this service does not fetch URLs).")
    if route.file_field is None:
        return GuardedBody(body, [body] if route.body_is_file else None)
    try:
        if form is None:
            form = FormReader(headers.get("content-type", ""), route.max_part_bytes)
            form.write(body)
        parts = form.parts()
    except PartTooLarge as error:
        return Refusal(413, str(error))
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
            return Refusal(400, _not_a_file(route, index, part))
    return GuardedBody(body, [part.data for part in parts])


def _not_a_file(route: GuardedRoute, index: int, part: FormPart) -> str:
    """Why a part without a filename is not a file, in terms of what the client sent."""
    start = f"Form part {index} of {route.file_field!r} is not a file:"
    if _has_extended_filename(part.disposition):
        return (
            f"{start} its Content-Disposition has a filename* but no filename parameter (RFC 7578 section 4.2 "
            f'ignores filename*); add filename="..." or let your HTTP client build the form, e.g. {route.example}.'
        )
    return f"{start} it is a text field (no filename); send each image as a file, e.g. {route.example}."


def _has_extended_filename(disposition: bytes) -> bool:
    """Whether a Content-Disposition value carries an RFC 2231 `filename*` parameter (which the standard library's
    header parser reports as a (charset, language, value) triple)."""
    message = Message()
    message["content-disposition"] = disposition.decode("latin-1")
    parameters = message.get_params(header="content-disposition") or []
    return any(name == "filename" and isinstance(value, tuple) for name, value in parameters)


def _empty_body(route: GuardedRoute) -> Refusal:
    return Refusal(400, f"The request body is empty; send an image, e.g. {route.example}.")


class RequestGuard:
    """Applies `check_request`, `read_body` and `check_body` to the guarded routes (POST only); every other
    request, health checks included, passes untouched. A request that passes carries its `GuardedBody` in the scope
    under `GUARDED_BODY`, and its body is replayed to the app.

    `routes` may be a function returning them, called when the server builds its app (limits that come from the
    served model are known only then).
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[str, GuardedRoute] | Callable[[], Mapping[str, GuardedRoute]],
        api_key_env: str,
    ) -> None:
        self.app = app
        self.routes = dict(routes() if callable(routes) else routes)
        # Read when the server builds its app, not at import: the key is a runtime secret, never part of the bento.
        self.api_key = os.environ.get(api_key_env) or None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self.routes.get(scope.get("path", "")) if scope["type"] == "http" else None
        if route is None or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        outcome = check_request(route, headers, self.api_key) or await _read(route, headers, receive)
        if isinstance(outcome, GuardedBody):
            await self.app({**scope, GUARDED_BODY: outcome}, _replay(outcome.body, receive), send)
            return
        await _send_refusal(send, outcome)


async def _read(route: GuardedRoute, headers: Mapping[str, str], receive: Receive) -> GuardedBody | Refusal:
    """The body read (a multipart one parsed as it arrives) and checked."""
    form = None
    if route.file_field is not None and media_type(headers) == "multipart/form-data":
        try:
            form = FormReader(headers.get("content-type", ""), route.max_part_bytes)
        except ValueError as error:
            return Refusal(400, str(error), close=True)  # the body is not read: the connection cannot be reused
    body = await read_body(receive, route, form)
    return body if isinstance(body, Refusal) else guarded_body(route, headers, body, form)


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
