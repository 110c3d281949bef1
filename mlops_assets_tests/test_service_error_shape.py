"""One error shape for every refusal, whichever layer refuses: exactly `{"error": "<message naming the problem>"}`,
BentoML's own input validation and Starlette's routing included."""

import json

import pytest

from mlops_assets.lib.serving.error_responses import error_message, field_path, is_error_body, validation_message
from mlops_assets_tests.service_fixtures import ServedBento

BASE64_EXAMPLE = 'A valid request: {"images": ["<base64 PNG>"]}.'


def test_pydantic_errors_become_one_sentence_naming_each_field() -> None:
    detail = [
        {"type": "missing", "loc": ["images"], "msg": "Field required"},
        {"type": "string_type", "loc": ["images", 2], "msg": "Input should be a valid string"},
        {"type": "json_invalid", "loc": [], "msg": "Invalid JSON: EOF while parsing"},
    ]
    assert validation_message(detail) == (
        "Invalid request: images: Field required; images[2]: Input should be a valid string; "
        "(the body): Invalid JSON: EOF while parsing."
    )
    assert field_path(["a", "b", 0, 1]) == "a.b[0][1]"


@pytest.mark.parametrize(
    ("status", "body", "headers", "message"),
    [
        (400, b'{"error": "2 validation error for Input", "detail": [{"loc": ["x"], "msg": "bad"}]}', {}, None),
        (400, b'[{"error": "Invalid image"}]', {}, "Invalid image"),
        (503, b"Service is not ready.", {}, "Service is not ready."),
        (500, b"", {}, "Internal Server Error"),
        (405, b"Method Not Allowed", {b"allow": b"POST"}, "GET is not allowed on /predict; use POST."),
        (404, b"Not Found", {}, "Nothing is served at /predict; the endpoints are listed at /docs."),
    ],
    ids=["pydantic detail", "bentoml list", "plain text", "empty", "405", "404"],
)
def test_other_layers_error_bodies_become_a_message(status: int, body: bytes, headers: dict, message: str) -> None:
    expected = message or "Invalid request: x: bad."
    assert error_message(status, body, "GET", "/predict", headers) == expected


def test_only_exactly_one_error_key_counts_as_the_shape() -> None:
    assert is_error_body(b'{"error": "x"}')
    assert not is_error_body(b'{"error": "x", "detail": []}')
    assert not is_error_body(b'[{"error": "x"}]')
    assert not is_error_body(b"Not Found")


# End to end: refusals from BentoML's own parsing and routing, as a client receives them from the served bento.
E2E_REFUSALS = {
    "missing field": (
        {"url": "/predict_base64", "json": {"pictures": []}},
        400,
        f"Invalid request: images: Field required. {BASE64_EXAMPLE}",
    ),
    "malformed json": (
        {"url": "/predict_base64", "content": b'{"images": [', "headers": {"Content-Type": "application/json"}},
        400,
        "Invalid request: (the body): Invalid JSON: EOF while parsing a list at line 1 column 12. " + BASE64_EXAMPLE,
    ),
    "wrong types": (
        {"url": "/predict_base64", "json": {"images": [1, {"a": 2}]}},
        400,
        "Invalid request: images[0]: Input should be a valid string; images[1]: Input should be a valid string. "
        + BASE64_EXAMPLE,
    ),
    "not an object": (
        {"url": "/predict_base64", "json": [1]},
        400,
        f"Invalid request: (the body): Input should be an object. {BASE64_EXAMPLE}",
    ),
    "wrong method": ({"method": "GET", "url": "/predict"}, 405, "GET is not allowed on /predict; use POST."),
    "unknown path": (
        {"url": "/predict_everything", "json": {}},
        404,
        "Nothing is served at /predict_everything; the endpoints are listed at /docs.",
    ),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", list(E2E_REFUSALS), ids=list(E2E_REFUSALS))
def test_refusals_of_bentoml_and_starlette_have_the_one_shape(served_bento: ServedBento, case: str) -> None:
    request, status, message = E2E_REFUSALS[case]
    request = dict(request)
    with served_bento.client() as client:
        response = client.request(request.pop("method", "POST"), **request)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert json.loads(response.content) == {"error": message}
    if status == 405:
        assert response.headers["allow"] == "POST"
