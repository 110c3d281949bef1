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


# case: (request, status, fragments the `error` message must contain, compared case-insensitively)
BAD_REQUESTS = {
    "empty raw body": (_image_request(b""), 400, ["empty"]),
    "empty multipart file": (_multipart({"images": ("x.png", b"")}), 400, ["empty"]),
    "empty multipart body": (
        {"url": "/predict", "content": b"", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
        400,
        ["empty"],
    ),
    "non-image bytes": (_multipart({"images": ("x.png", b"hello, not an image")}), 400, ["not a recognised image"]),
    "truncated image": (_image_request(_png(64, 64)[:60]), 400, ["truncated"]),
    "1x1 image": (_image_request(_png(1, 1)), 400, ["1x1", "too small"]),
    "20000x20000 header": (_image_request(png_claiming_size(20_000, 20_000)), 400, ["40,000,000 pixels"]),
    "wrong content type on raw endpoint": (
        _image_request(_png(8, 8), "text/plain"),
        415,
        ["Content-Type 'text/plain'", "image/*"],
    ),
    "json sent to the multipart endpoint": (
        {"url": "/predict", "json": {"images": ["x"]}},
        415,
        ["Content-Type 'application/json'", "multipart/form-data"],
    ),
    "malformed json": (
        {"url": "/predict_base64", "content": b'{"images": [', "headers": {"Content-Type": "application/json"}},
        400,
        ["invalid json"],
    ),
    "wrong base64": ({"url": "/predict_base64", "json": {"images": ["not base64!"]}}, 400, ["not valid base64"]),
    "an image's URL instead of its bytes": (
        {"url": "/predict_base64", "json": {"images": ["https://example.com/cat.png"]}},
        400,
        ["images[0] is a URL", "does not fetch"],
    ),
    "a bucket address instead of the bytes": (
        {"url": "/predict_base64", "json": {"images": [base64.b64encode(_png(8, 8)).decode(), "GS://bucket/a.png"]}},
        400,
        ["images[1] is a URL", "does not fetch"],
    ),
    "a data URL without base64": (
        {"url": "/predict_base64", "json": {"images": ["data:image/svg+xml,<svg/>"]}},
        400,
        ["images[0] is a data URL without ';base64,'"],
    ),
    "base64 of non-image bytes": (
        {"url": "/predict_base64", "json": {"images": [base64.b64encode(b"plain text").decode()]}},
        400,
        ["not a recognised image"],
    ),
    "missing json field": ({"url": "/predict_base64", "json": {"pictures": []}}, 400, ["images", "required"]),
    "missing multipart field": (
        _multipart({"image": ("x.png", _png(8, 8))}),
        400,
        ["form part 'image'", "field 'images'"],
    ),
    "empty image list": ({"url": "/predict_base64", "json": {"images": []}}, 400, ["No image"]),
    "too many images": (
        {"url": "/predict_base64", "json": {"images": [base64.b64encode(_png(8, 8)).decode()] * 257}},
        400,
        ["257 images", "at most 256"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_input_gets_a_4xx_with_a_message(served_bento: ServedBento, case: str) -> None:
    request, status, fragments = BAD_REQUESTS[case]
    with served_bento.client() as client:
        response = client.request("POST", **request)
        assert response.status_code == status, (case, response.status_code, response.text)
        # One shape for every refusal: a JSON object whose `error` says what was wrong.
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), str), (case, body)
        for fragment in fragments:
            assert fragment.lower() in body["error"].lower(), (case, fragment, body["error"])
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
    # The limit per image is the served model's image policy (max_bytes), the one training enforced.
    assert response.json() == {
        "error": "The image is 22,020,096 bytes, above the limit of 20,000,000 bytes per image; send a smaller image."
    }
