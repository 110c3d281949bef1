"""A corpus of bad requests: each gets a 4xx with a message, and the service keeps answering valid requests."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from mlops_assets_tests.conftest import png_claiming_size
from mlops_assets_tests.service_fixtures import ServedBento

pytestmark = pytest.mark.e2e


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width), 128, dtype=np.uint8), mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def _image_request(body: bytes, content_type: str = "image/png") -> dict:
    return {"url": "/predict_image", "content": body, "headers": {"Content-Type": content_type}}


def _multipart(files: dict) -> dict:
    return {"url": "/predict", "files": files}


BAD_REQUESTS = {
    "empty raw body": (_image_request(b""), "empty"),
    "empty multipart file": (_multipart({"images": ("x.png", b"")}), "empty"),
    "empty multipart body": (
        {"url": "/predict", "content": b"", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
        "images",
    ),
    "non-image bytes": (_multipart({"images": ("x.png", b"hello, not an image")}), "not a recognised image"),
    "truncated image": (_image_request(_png(64, 64)[:60]), "image"),
    "1x1 image": (_image_request(_png(1, 1)), "at least"),
    "20000x20000 header": (_image_request(png_claiming_size(20_000, 20_000)), "pixels"),
    "wrong content type on raw endpoint": (_image_request(_png(8, 8), "text/plain"), "Content-Type"),
    "json sent to the multipart endpoint": (
        {"url": "/predict", "json": {"images": ["x"]}},
        "Content-Type",
    ),
    "malformed json": (
        {"url": "/predict_base64", "content": b'{"images": [', "headers": {"Content-Type": "application/json"}},
        "error",
    ),
    "wrong base64": ({"url": "/predict_base64", "json": {"images": ["not base64!"]}}, "base64"),
    "base64 of non-image bytes": (
        {"url": "/predict_base64", "json": {"images": [base64.b64encode(b"plain text").decode()]}},
        "not a recognised image",
    ),
    "missing json field": ({"url": "/predict_base64", "json": {"pictures": []}}, "images"),
    "missing multipart field": (_multipart({"image": ("x.png", _png(8, 8))}), "images"),
    "empty image list": ({"url": "/predict_base64", "json": {"images": []}}, "No image"),
    "too many images": (
        {"url": "/predict_base64", "json": {"images": [base64.b64encode(_png(8, 8)).decode()] * 257}},
        "at most",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_with_a_message(served_bento: ServedBento, case: str) -> None:
    request, expected_text = BAD_REQUESTS[case]
    with served_bento.client() as client:
        response = client.request("POST", **request)
        assert 400 <= response.status_code < 500, (case, response.status_code, response.text)
        assert expected_text.lower() in response.text.lower(), (case, response.text)
        # One shape for every refusal: a JSON object whose `error` says what was wrong.
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (case, body)
        # The service keeps serving after every refusal.
        _, data = served_bento.samples[0]
        assert client.post("/predict", files={"images": ("x.png", data)}).status_code == 200


def test_oversized_body_is_refused_before_it_is_read(served_bento: ServedBento) -> None:
    with served_bento.client() as client:
        # The header alone decides: the server answers without reading a 21 MB body.
        response = client.post(
            "/predict_image", content=b"\0" * (21 * 1024 * 1024), headers={"Content-Type": "image/png"}
        )
    assert response.status_code == 413
    assert "limit" in response.json()["error"]
