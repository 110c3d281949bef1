"""Guarded requests answered straight from what the request guard read: the files it hands on, the requests the
handler declines (left to the app, body intact), the headers added, and a failing handler's answer."""

import asyncio
import json
import logging

import pytest
from starlette.responses import JSONResponse, Response

from mlops_assets.lib.serving.direct_dispatch import UNEXPECTED_ERROR, DirectDispatch
from mlops_assets.lib.serving.request_guard import (
    GUARDED_BODY,
    GuardedBody,
    GuardedRoute,
    Refusal,
    RequestGuard,
    form_parts,
    guarded_body,
)

FORM = GuardedRoute(("multipart/form-data",), 10_000, "a form", file_field="images")
RAW = GuardedRoute(("image/*",), 10_000, "a raw image", body_is_file=True)
JSON_ROUTE = GuardedRoute(("application/json",), 10_000, "a JSON body")
FORM_TYPE = "multipart/form-data; boundary=XyZ"
# Part contents that look like the form's own syntax: a CRLF, a boundary without its leading CRLF, a header line.
FILES = [b"\x89PNG\r\n\x1a\nfirst", b"--XyZ is not a boundary here\r\n", b'Content-Disposition: form-data; name="x"']
pytestmark = pytest.mark.timeout(60)


def _form(files: list[bytes]) -> bytes:
    parts = [
        f'--XyZ\r\nContent-Disposition: form-data; name="images"; filename="{index}.png"\r\n'.encode()
        + b"Content-Type: image/png\r\n\r\n"
        + data
        + b"\r\n"
        for index, data in enumerate(files)
    ]
    return b"".join(parts) + b"--XyZ--\r\n"


def test_the_guard_hands_on_each_file_part_byte_for_byte_in_order() -> None:
    body = _form(FILES)
    assert [part.data for part in form_parts(FORM_TYPE, body)] == FILES
    assert guarded_body(FORM, {"content-type": FORM_TYPE}, body) == GuardedBody(body, FILES)


def test_a_raw_image_body_is_its_one_file_and_a_json_body_carries_none() -> None:
    image = b"\x89PNG\r\n\x1a\n..."
    assert guarded_body(RAW, {"content-type": "image/png"}, image) == GuardedBody(image, [image])
    assert guarded_body(JSON_ROUTE, {"content-type": "application/json"}, b"{}") == GuardedBody(b"{}", None)
    assert guarded_body(RAW, {"content-type": "image/png"}, b"") == Refusal(
        400, "The request body is empty; send an image, e.g. a raw image."
    )


class Recorder:
    """An ASGI app standing for BentoML's: records what reached it and answers 200 "from the app"."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.scopes: list[dict] = []

    async def __call__(self, scope: dict, receive, send) -> None:
        self.scopes.append(scope)
        self.bodies.append((await receive())["body"])
        await Response("from the app")(scope, receive, send)


def _call(app, scope: dict, body: bytes = b"") -> list[dict]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def _scope(path: str, guarded: GuardedBody | None) -> dict:
    scope = {"type": "http", "method": "POST", "path": path, "headers": []}
    if guarded is not None:
        scope[GUARDED_BODY] = guarded
    return scope


def _headers(sent: list[dict]) -> dict[str, str]:
    return {name.decode(): value.decode() for name, value in sent[0]["headers"]}


def test_a_guarded_request_is_answered_by_the_handler_with_the_layer_headers_and_never_reaches_the_app() -> None:
    app, calls = Recorder(), []

    async def handler(scope: dict, guarded: GuardedBody) -> Response:
        calls.append((scope["path"], guarded.files))
        return JSONResponse({"files": len(guarded.files)})

    middleware = DirectDispatch(app, handler=lambda: handler, headers=lambda: {"server": "BentoML Service/Test"})
    sent = _call(middleware, _scope("/predict", GuardedBody(b"body", [b"a", b"b"])))
    assert calls == [("/predict", [b"a", b"b"])]
    assert app.scopes == []
    assert sent[0]["status"] == 200
    assert _headers(sent)["server"] == "BentoML Service/Test"
    assert json.loads(sent[1]["body"]) == {"files": 2}


def test_requests_without_a_guarded_body_and_those_the_handler_declines_reach_the_app_with_their_body() -> None:
    app = Recorder()

    async def declines(scope: dict, guarded: GuardedBody) -> None:
        return None

    middleware = DirectDispatch(app, handler=lambda: declines, headers=dict)
    unguarded = _call(middleware, _scope("/metadata", None), body=b"")
    declined = _call(middleware, _scope("/predict_base64", GuardedBody(b'{"x": 1}', None)), body=b'{"x": 1}')
    assert [sent[1]["body"] for sent in (unguarded, declined)] == [b"from the app", b"from the app"]
    assert app.bodies == [b"", b'{"x": 1}']
    assert app.scopes[1][GUARDED_BODY] == GuardedBody(b'{"x": 1}', None)


def test_a_failing_handler_gets_bentomls_generic_500_and_the_error_is_logged(caplog) -> None:
    async def fails(scope: dict, guarded: GuardedBody) -> Response:
        raise RuntimeError("the model broke")

    middleware = DirectDispatch(Recorder(), handler=lambda: fails, headers=lambda: {"server": "BentoML Service/Test"})
    with caplog.at_level(logging.ERROR, logger="bentoml.image_classifier"):
        sent = _call(middleware, _scope("/predict", GuardedBody(b"body", [b"a"])))
    assert sent[0]["status"] == 500
    assert json.loads(sent[1]["body"]) == {"error": UNEXPECTED_ERROR}
    assert _headers(sent)["server"] == "BentoML Service/Test"
    assert "Unexpected error answering POST /predict" in caplog.text
    assert "RuntimeError: the model broke" in caplog.text


def test_the_handler_is_looked_up_once_and_a_failing_lookup_answers_500_and_is_tried_again(caplog) -> None:
    # The service instance exists only once the server has started: a lookup before then fails, is not kept, and the
    # next request looks again; once found, the handler is kept for the process's life.
    lookups: list[str] = []

    async def handler(scope: dict, guarded: GuardedBody) -> Response:
        return JSONResponse({"files": len(guarded.files)})

    def find() -> object:
        lookups.append("lookup")
        if len(lookups) == 1:
            raise RuntimeError("the service is not instantiated yet")
        return handler

    middleware = DirectDispatch(Recorder(), handler=find, headers=dict)
    with caplog.at_level(logging.ERROR, logger="bentoml.image_classifier"):
        first = _call(middleware, _scope("/predict", GuardedBody(b"body", [b"a"])))
    answers = [_call(middleware, _scope("/predict", GuardedBody(b"body", [b"a", b"b"]))) for _ in range(2)]
    assert (first[0]["status"], json.loads(first[1]["body"])) == (500, {"error": UNEXPECTED_ERROR})
    assert "RuntimeError: the service is not instantiated yet" in caplog.text
    assert [(sent[0]["status"], json.loads(sent[1]["body"])) for sent in answers] == [(200, {"files": 2})] * 2
    assert lookups == ["lookup", "lookup"]


def test_the_guard_attaches_the_files_it_read_to_the_scope_and_replays_the_body() -> None:
    app = Recorder()
    guard = RequestGuard(app, routes={"/predict": FORM}, api_key_env="MLOPS_TEST_UNSET_KEY")
    body = _form(FILES)
    headers = [(b"content-type", FORM_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    sent = _call(guard, {"type": "http", "method": "POST", "path": "/predict", "headers": headers}, body=body)
    assert sent[1]["body"] == b"from the app"
    assert app.scopes[0][GUARDED_BODY] == GuardedBody(body, FILES)
    assert app.bodies == [body]
