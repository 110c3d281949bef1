"""The request guard parses what clients send: every RFC 7578 shape of a form part's header, chunked bodies and each
form part bounded while they are read, and bodies with no length at all; both as pure decisions and end to end on the
served bento."""

import asyncio
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from mlops_assets.lib.serving.request_guard import (
    FormPart,
    FormReader,
    GuardedRoute,
    Refusal,
    check_body,
    check_request,
    form_parts,
    read_body,
)
from mlops_assets_tests.service_fixtures import API_KEY, ServedBento

FORM = GuardedRoute(("multipart/form-data",), 1000, "a form", file_field="images")
RAW = GuardedRoute(("image/*",), 1000, "a raw image", body_is_file=True)
JSON_BODY = GuardedRoute(("application/json",), 1000, "a JSON body")
# A form whose parts may carry at most 100 bytes each, in a body of at most 10,000.
SMALL_PARTS = GuardedRoute(("multipart/form-data",), 10_000, "a form", file_field="images", max_part_bytes=100)
FORM_TYPE = "multipart/form-data; boundary=XyZ"
# Content-Disposition values as clients write them; each names the field `images` and a file.
DISPOSITIONS = {
    "quoted (browsers, curl, httpx)": (b'form-data; name="images"; filename="a.png"', "a.png"),
    ".NET: unquoted, with filename*": (b"form-data; name=images; filename=a.png; filename*=utf-8''a.png", "a.png"),
    "filename* first": (
        b'form-data; filename*=UTF-8\'\'%C3%A9t%C3%A9.png; name="images"; filename="ete.png"',
        "ete.png",
    ),
    "filename before name": (b'form-data; filename="a.png"; name="images"', "a.png"),
    "no spaces": (b'form-data;name="images";filename="a.png"', "a.png"),
    "spaces around separators": (b'form-data ;  name = "images" ; filename = "a b.png"', "a b.png"),
    "semicolon inside quotes": (b'form-data; name="images"; filename="a;b.png"', "a;b.png"),
    "escaped quote": (b'form-data; name="images"; filename="say \\"hi\\".png"', 'say "hi".png'),
    "raw UTF-8 filename": ('form-data; name="images"; filename="été.png"'.encode(), "été.png"),
    "empty filename": (b'form-data; name="images"; filename=""', ""),
    "upper-case disposition type": (b'FORM-DATA; name="images"; filename="a.png"', "a.png"),
}


def _form(disposition: bytes, data: bytes = b"DATA", header_name: bytes = b"Content-Disposition") -> bytes:
    return (
        b"--XyZ\r\nContent-Type: image/png\r\n"
        + header_name
        + b": "
        + disposition
        + b"\r\n\r\n"
        + data
        + b"\r\n--XyZ--\r\n"
    )


@pytest.mark.parametrize("shape", list(DISPOSITIONS), ids=list(DISPOSITIONS))
def test_every_rfc7578_shape_of_a_part_header_is_parsed(shape: str) -> None:
    disposition, filename = DISPOSITIONS[shape]
    assert form_parts(FORM_TYPE, _form(disposition)) == [FormPart("images", filename)]
    assert check_body(FORM, {"content-type": FORM_TYPE}, _form(disposition)) is None


def test_header_names_are_case_insensitive_and_the_boundary_may_be_quoted() -> None:
    body = _form(b"form-data; name=images; filename=a.png", header_name=b"content-disposition")
    assert form_parts('multipart/form-data; boundary="XyZ"', body) == [FormPart("images", "a.png")]


def test_parts_are_found_by_the_parser_not_by_searching_the_bytes() -> None:
    # File content that looks like a part header is data, not a part.
    data = b'\r\nContent-Disposition: form-data; name="other"\r\n\r\nhttp://example.com'
    body = _form(b'form-data; name="images"; filename="a.png"', data=data)
    assert form_parts(FORM_TYPE, body) == [FormPart("images", "a.png")]
    two = b"--XyZ\r\nContent-Disposition: form-data; name=images; filename=1.png\r\n\r\nA\r\n" + _form(
        b"form-data; filename=2.png; name=images"
    )
    assert form_parts(FORM_TYPE, two) == [FormPart("images", "1.png"), FormPart("images", "2.png")]


@pytest.mark.parametrize(
    ("content_type", "body", "message"),
    [
        (
            FORM_TYPE,
            _form(b'form-data; name="images"'),
            "Form part 0 of 'images' is not a file: it is a text field (no filename); send each image as a file, "
            "e.g. a form.",
        ),
        (
            FORM_TYPE,
            _form(b"form-data; name=images; filename*=utf-8''a.png"),
            "Form part 0 of 'images' is not a file: its Content-Disposition has a filename* but no filename "
            'parameter (RFC 7578 section 4.2 ignores filename*); add filename="..." or let your HTTP client build the '
            "form, e.g. a form.",
        ),
        (FORM_TYPE, _form(b'form-data; name="image"; filename="a.png"'), "Unexpected form part 'image'"),
        (FORM_TYPE, _form(b'form-data; filename="a.png"'), "A form part has no name"),
        (FORM_TYPE, _form(b'form-data; name="images"; filename="a.png"')[:-9], "ends before its closing boundary"),
        (FORM_TYPE, b"--XyZ--\r\n", "No form parts found"),
        (FORM_TYPE, b"not a form at all", "The multipart body is malformed"),
        ("multipart/form-data", _form(b'form-data; name="images"; filename="a.png"'), "has no boundary"),
        (FORM_TYPE, b"", "The request body is empty"),
    ],
    ids=[
        "text part",
        "filename* only",
        "other field",
        "no name",
        "truncated",
        "no parts",
        "garbage",
        "no boundary",
        "empty",
    ],
)
def test_malformed_or_stray_parts_are_refused_with_a_message(content_type: str, body: bytes, message: str) -> None:
    refusal = check_body(FORM, {"content-type": content_type}, body)
    assert refusal is not None and refusal.status == 400
    assert message in refusal.message, refusal.message


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_form(b'form-data; name="images"; filename="a.png"', header_name=b"X-Other"), "Missing Content-Disposition"),
        (_form(b'attachment; name="images"; filename="a.png"'), "Content-Disposition segment header: Wrong type"),
        (_form(b'form-data; name="images"; filename="a.png"').replace(b"\r\n", b"\n"), "Invalid line break"),
        (b"--XyZ\r\nno colon here\r\n\r\nDATA\r\n--XyZ--\r\n", "Malformed segment header"),
    ],
    ids=["no Content-Disposition", "not form-data", "LF line breaks", "header without a colon"],
)
def test_a_malformed_part_is_refused_naming_what_the_parser_found(body: bytes, message: str) -> None:
    refusal = check_body(FORM, {"content-type": FORM_TYPE}, body)
    assert refusal is not None and refusal.status == 400, refusal
    assert refusal.message.startswith("The multipart body is malformed (") and message in refusal.message, refusal
    assert refusal.message.endswith("let your HTTP client build the form."), refusal


def test_a_preamble_an_epilogue_and_a_folded_part_header_are_read_as_rfc_2046_and_7578_say() -> None:
    one_part = _form(b'form-data; name="images"; filename="a.png"')
    # A preamble before the first boundary and an epilogue after the last are ignored.
    with_both = b"This is a multi-part message in MIME format.\r\n" + one_part + b"epilogue"
    assert form_parts(FORM_TYPE, with_both) == [FormPart("images", "a.png")]
    # An obsolete folded header line continues the header before it.
    folded = _form(b'form-data; name="images";\r\n filename="a.png"')
    assert form_parts(FORM_TYPE, folded) == [FormPart("images", "a.png")]


def test_a_body_that_never_shows_its_boundary_is_told_apart_from_a_cut_off_one() -> None:
    never = check_body(FORM, {"content-type": "multipart/form-data; boundary=Other"}, _form(b"form-data"))
    assert never == Refusal(
        400,
        "The multipart body is malformed (no line in it starts with '--' and the boundary 'Other' its Content-Type "
        "names); let your HTTP client build the form.",
    )
    cut_in_header = check_body(FORM, {"content-type": FORM_TYPE}, b"--XyZ\r\nContent-Disposition: form-da")
    assert cut_in_header is not None and "ends before its closing boundary" in cut_in_header.message
    long_boundary = "b" * 500
    refusal = check_body(FORM, {"content-type": f"multipart/form-data; boundary={long_boundary}"}, b"junk" * 200)
    assert refusal is not None and long_boundary not in refusal.message and len(refusal.message) < 300, refusal


@pytest.mark.parametrize("piece", [1, 5, 40, 41, 42, 43, 44, 45, 46, 10_000], ids=lambda piece: f"{piece}-byte pieces")
def test_bytes_right_before_the_first_boundary_are_refused_however_the_body_is_cut(piece: int) -> None:
    # Cut inside the first boundary, this body once lost its first image (taken for a preamble) and kept the second.
    body = b"x" * 40 + _two_part_form(b"A" * 10, b"B" * 10)
    reader = FormReader(FORM_TYPE)
    for start in range(0, len(body), piece):
        reader.write(body[start : start + piece])
    with pytest.raises(ValueError, match=r"^The multipart body is malformed \(bytes right before its first boundary"):
        reader.parts()
    # After a line break, the same bytes are a preamble: both images, whatever the pieces.
    preamble = b"x" * 38 + b"\r\n" + _two_part_form(b"A" * 10, b"B" * 10)
    reader = FormReader(FORM_TYPE)
    for start in range(0, len(preamble), piece):
        reader.write(preamble[start : start + piece])
    assert [part.data for part in reader.parts()] == [b"A" * 10, b"B" * 10]


@pytest.mark.parametrize(
    "content_type",
    [
        'multipart/form-data; boundary="a=b/c:d?e (f),g"',
        "multipart/form-data; boundary=a=b/c:d?e (f),g",
        "multipart/form-data;\tboundary=a=b/c:d?e (f),g ",
        "multipart/form-data; charset=UTF-8; BOUNDARY=a=b/c:d?e (f),g",
    ],
    ids=["quoted", "unquoted", "after a tab", "upper-case, after another parameter"],
)
def test_a_boundary_with_characters_rfc_2045_wants_quoted_is_read_quoted_or_not(content_type: str) -> None:
    body = _form(b'form-data; name="images"; filename="a.png"').replace(b"XyZ", b"a=b/c:d?e (f),g")
    assert form_parts(content_type, body) == [FormPart("images", "a.png")]


def test_a_boundary_is_read_from_its_own_parameter_not_from_inside_another_ones_quoted_value() -> None:
    body = _form(b'form-data; name="images"; filename="a.png"')
    assert form_parts('multipart/form-data; note="x; boundary=evil"; boundary=XyZ', body) == [
        FormPart("images", "a.png")
    ]
    assert form_parts('multipart/form-data; boundary="X\\"yZ"', body.replace(b"XyZ", b'X"yZ')) == [
        FormPart("images", "a.png")
    ]


def test_an_unquoted_non_ascii_name_or_filename_is_read_not_taken_for_a_missing_one() -> None:
    disposition = "form-data; name=images; filename=été.png".encode()
    assert form_parts(FORM_TYPE, _form(disposition)) == [FormPart("images", "été.png")]
    assert form_parts(FORM_TYPE, _form("form-data; name=imágenes; filename=a.png".encode())) == [
        FormPart("imágenes", "a.png")
    ]
    # The 413 for such a part names its file as the part does.
    too_large = _form("form-data; name=images; filename=été.png".encode(), data=b"x" * 101)
    assert check_body(SMALL_PARTS, {"content-type": FORM_TYPE}, too_large) == Refusal(
        413, "Form part 0 ('été.png') is above the limit of 100 bytes per image; send a smaller image."
    )


def test_a_long_filename_passes_and_a_header_flood_is_refused_saying_what_the_limits_are() -> None:
    long_name = "a" * 5000 + ".png"
    assert form_parts(FORM_TYPE, _form(f'form-data; name="images"; filename="{long_name}"'.encode())) == [
        FormPart("images", long_name)
    ]
    too_long = check_body(
        FORM, {"content-type": FORM_TYPE}, _form(b'form-data; name="images"; filename="' + b"a" * 9000)
    )
    assert too_long == Refusal(
        400,
        "The multipart body is refused (Maximum segment header length exceeded): a part may carry at most 16 header "
        "lines of at most 8,192 bytes each; send shorter part headers (a shorter filename).",
    )
    flood = b"--XyZ\r\n" + b"".join(b"X-Header-%d: v\r\n" % index for index in range(20)) + _form(b"form-data")[7:]
    refusal = check_body(FORM, {"content-type": FORM_TYPE}, flood)
    assert refusal is not None and refusal.message.startswith(
        "The multipart body is refused (Maximum segment header count exceeded): a part may carry at most 16 header"
    ), refusal


def test_a_boundary_the_parser_cannot_use_is_refused_before_the_body_is_read() -> None:
    with pytest.raises(ValueError, match="boundary 'a\\\\nb' is not usable .*Invalid characters in boundary"):
        FormReader('multipart/form-data; boundary="a\nb"')


@pytest.mark.parametrize("piece", [1, 2, 3, 7, 64], ids=lambda piece: f"{piece}-byte pieces")
def test_a_body_arriving_in_pieces_of_any_size_gives_the_same_parts(piece: int) -> None:
    body = b"preamble\r\n" + _two_part_form(b"a--XyZ\r\n-XyZ\r" * 3, b"x" * 90)
    whole = form_parts(FORM_TYPE, body)
    reader = FormReader(FORM_TYPE, SMALL_PARTS.max_part_bytes)
    for start in range(0, len(body), piece):
        reader.write(body[start : start + piece])
    pieces = reader.parts()
    assert pieces == whole == [FormPart("images", "small.png"), FormPart("images", "big.png")]
    assert [part.data for part in pieces] == [part.data for part in whole]
    assert pieces[0].data == b"a--XyZ\r\n-XyZ\r" * 3 and pieces[1].data == b"x" * 90
    # Cut anywhere, the boundary is still seen, and the refusal says the body ends early.
    cut = FormReader(FORM_TYPE)
    for start in range(0, len(body) - 20, piece):
        cut.write(body[start : min(start + piece, len(body) - 20)])
    with pytest.raises(ValueError, match="ends before its closing boundary"):
        cut.parts()


def test_a_text_field_is_never_described_as_a_lone_filename_star() -> None:
    # What `curl -F images=hello` sends: a text field, with no filename* anywhere (not even inside a quoted value).
    for disposition in (b'form-data; name="images"', b'form-data; name="images"; note="filename*=x"'):
        refusal = check_body(FORM, {"content-type": FORM_TYPE}, _form(disposition))
        assert refusal == Refusal(
            400,
            "Form part 0 of 'images' is not a file: it is a text field (no filename); send each image as a file, "
            "e.g. a form.",
        )


def test_a_body_without_content_length_is_read_and_bounded_while_reading() -> None:
    headers = {"content-type": "image/png"}
    assert check_request(RAW, headers, api_key=None) is None
    assert check_request(RAW, {**headers, "transfer-encoding": "chunked"}, api_key=None) is None
    declared = check_request(RAW, {**headers, "content-length": "1001"}, api_key=None)
    assert declared == Refusal(
        413, "The image is 1,001 bytes, above the limit of 1,000 bytes per image; send a smaller image.", close=True
    )
    declared_json = check_request(JSON_BODY, {"content-type": "application/json", "content-length": "1001"}, None)
    assert declared_json == Refusal(
        413,
        "The request body is 1,001 bytes, above the limit of 1,000 bytes per request; send fewer or smaller images.",
        close=True,
    )


def _receive(chunks: list[bytes], log: list[int]):
    async def receive() -> dict:
        index = len(log)
        log.append(index)
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    return receive


def test_read_body_joins_chunks_up_to_the_limit() -> None:
    log: list[int] = []
    assert asyncio.run(read_body(_receive([b"a" * 400, b"b" * 400, b"c" * 200], log), RAW)) == (
        b"a" * 400 + b"b" * 400 + b"c" * 200
    )
    assert log == [0, 1, 2]


def test_read_body_refuses_as_soon_as_the_limit_is_passed_and_stops_reading() -> None:
    log: list[int] = []
    outcome = asyncio.run(read_body(_receive([b"a" * 600, b"b" * 600, b"c" * 600, b"d" * 600], log), RAW))
    assert outcome == Refusal(
        413, "The image is above the limit of 1,000 bytes per image; send a smaller image.", close=True
    )
    assert log == [0, 1], "nothing after the chunk that passed the limit may be read"


def _two_part_form(first: bytes, second: bytes) -> bytes:
    return (
        b'--XyZ\r\nContent-Disposition: form-data; name="images"; filename="small.png"\r\n\r\n'
        + first
        + b'\r\n--XyZ\r\nContent-Disposition: form-data; name="images"; filename="big.png"\r\n\r\n'
        + second
        + b"\r\n--XyZ--\r\n"
    )


def test_a_form_part_past_the_per_image_limit_is_refused_while_the_body_is_read() -> None:
    body = _two_part_form(b"s" * 100, b"b" * 5000)
    chunks = [body[start : start + 200] for start in range(0, len(body), 200)]
    log: list[int] = []
    form = FormReader(FORM_TYPE, SMALL_PARTS.max_part_bytes)
    outcome = asyncio.run(read_body(_receive(chunks, log), SMALL_PARTS, form))
    assert outcome == Refusal(
        413, "Form part 1 ('big.png') is above the limit of 100 bytes per image; send a smaller image.", close=True
    )
    # The part passed the limit inside the second chunk: nothing after it was read, though the body was within its
    # own limit.
    assert len(body) <= SMALL_PARTS.max_body_bytes and log == [0, 1], log


def test_a_part_of_exactly_the_limit_passes_and_one_byte_more_is_refused_in_a_whole_body_too() -> None:
    headers = {"content-type": FORM_TYPE}
    accepted = check_body(SMALL_PARTS, headers, _two_part_form(b"s" * 100, b"b" * 100))
    assert accepted is None
    refused = check_body(SMALL_PARTS, headers, _two_part_form(b"s" * 101, b"b"))
    assert refused == Refusal(
        413, "Form part 0 ('small.png') is above the limit of 100 bytes per image; send a smaller image."
    )


def test_a_form_without_a_boundary_is_refused_before_its_body_is_read() -> None:
    with pytest.raises(ValueError, match="^The multipart Content-Type has no boundary; let your HTTP client build"):
        FormReader("multipart/form-data")


def test_read_body_stops_when_the_client_disconnects() -> None:
    async def receive() -> dict:
        return {"type": "http.disconnect"}

    assert asyncio.run(read_body(receive, RAW)) == Refusal(
        400, "The client disconnected before the request body was complete."
    )


# End to end: the served bento, a real HTTP client, and the same parser in BentoML behind the guard.


def _canonical(served_bento: ServedBento, data: bytes) -> dict:
    with served_bento.client() as client:
        response = client.post("/predict", files={"images": ("x.png", data)})
    assert response.status_code == 200, response.text
    return response.json()


def _assert_same_answer(got: dict, expected: dict) -> None:
    # Requests may share a forward pass with others (micro-batching), so probabilities match to rounding.
    assert got["model_version"] == expected["model_version"]
    assert [p["label"] for p in got["predictions"]] == [p["label"] for p in expected["predictions"]]
    for mine, theirs in zip(got["predictions"], expected["predictions"], strict=True):
        assert mine["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-5)


@pytest.mark.e2e
@pytest.mark.parametrize("shape", list(DISPOSITIONS), ids=list(DISPOSITIONS))
def test_every_part_header_shape_gets_a_prediction_from_the_server(served_bento: ServedBento, shape: str) -> None:
    _, data = served_bento.samples[0]
    body = _form(DISPOSITIONS[shape][0], data=data)
    with served_bento.client() as client:
        response = client.post("/predict", content=body, headers={"Content-Type": FORM_TYPE})
    assert response.status_code == 200, response.text
    _assert_same_answer(response.json(), _canonical(served_bento, data))


def _chunks(data: bytes, size: int = 1000) -> Iterator[bytes]:
    # A generator body: httpx sends it with Transfer-Encoding: chunked and no Content-Length.
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.e2e
def test_chunked_uploads_are_accepted_on_every_endpoint(served_bento: ServedBento) -> None:
    import base64
    import json

    import httpx

    _, data = served_bento.samples[0]
    expected = _canonical(served_bento, data)
    form = httpx.Request("POST", "http://x/", files={"images": ("x.png", data)})
    requests = {
        "/predict_image": (data, "image/png"),
        "/predict": (form.read(), form.headers["content-type"]),
        "/predict_base64": (json.dumps({"images": [base64.b64encode(data).decode()]}).encode(), "application/json"),
    }
    with served_bento.client() as client:
        for path, (body, content_type) in requests.items():
            request = client.build_request("POST", path, content=_chunks(body), headers={"Content-Type": content_type})
            assert request.headers["transfer-encoding"] == "chunked" and "content-length" not in request.headers
            response = client.send(request)
            assert response.status_code == 200, (path, response.text)
            _assert_same_answer(response.json(), expected)


@pytest.mark.e2e
def test_a_chunked_upload_past_the_limit_gets_413_and_is_not_read_to_its_end(served_bento: ServedBento) -> None:
    limit = 20_000_000  # the served model's image policy, max_bytes
    total = 10 * limit
    sent = 0

    def endless_zeros() -> Iterator[bytes]:
        nonlocal sent
        chunk = b"\0" * 65536
        while sent < total:
            sent += len(chunk)
            yield chunk

    with served_bento.client() as client:
        response = client.post("/predict_image", content=endless_zeros(), headers={"Content-Type": "image/png"})
    assert response.status_code == 413
    assert response.json() == {
        "error": f"The image is above the limit of {limit:,} bytes per image; send a smaller image."
    }
    assert response.headers["connection"] == "close"
    # The server stopped reading and closed: the client never got to send the rest (socket buffers hold a few MB).
    assert sent < total // 2, sent


@pytest.mark.e2e
def test_a_body_with_neither_length_nor_chunking_is_an_empty_body(served_bento: ServedBento) -> None:
    # HTTP/1.1 (RFC 9112 section 6.3): such a request has no body. Raw socket: HTTP clients always frame a body.
    url = urlparse(served_bento.url)
    request = (
        f"POST /predict_image HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {API_KEY}\r\n"
        "Content-Type: image/png\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), head
    assert body.decode() == (
        '{"error": "The request body is empty; send an image, e.g. '
        "curl -H 'Content-Type: image/png' --data-binary @digit.png .../predict_image.\"}"
    )
