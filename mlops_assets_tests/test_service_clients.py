"""BentoML's own Python clients (sync and async) against the served bento, called the way BentoML documents them:
file paths and PIL images in, the service's predictions out, equal to a plain multipart request's."""

import asyncio
import base64
import json
from pathlib import Path

import bentoml
import pytest
from PIL import Image

from mlops_assets_tests.service_fixtures import API_KEY, ServedBento

pytestmark = pytest.mark.e2e


def _write_samples(served_bento: ServedBento, directory: Path, count: int) -> list[Path]:
    paths = []
    for index, (_, data) in enumerate(served_bento.samples[:count]):
        path = directory / f"sample {index}.png"
        path.write_bytes(data)
        paths.append(path)
    return paths


def _reference(served_bento: ServedBento, paths: list[Path]) -> list[dict]:
    """What a plain multipart request answers for the same files: the clients must get exactly this."""
    with served_bento.client() as client:
        response = client.post("/predict", files=[("images", (path.name, path.read_bytes())) for path in paths])
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def _assert_same_predictions(answer: dict, expected: list[dict], served_bento: ServedBento) -> None:
    assert answer["model_version"] == served_bento.model_tag
    assert [p["label"] for p in answer["predictions"]] == [p["label"] for p in expected]
    for got, want in zip(answer["predictions"], expected, strict=True):
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)


def _call(name: str, paths: list[Path]) -> tuple[str, tuple, dict, list[Path]]:
    """A documented way to call an endpoint: (endpoint, positional args, keyword args, the files it sends)."""
    first, second = paths
    if name == "predict(images=[Path])":
        return "predict", (), {"images": [first]}, [first]
    if name == "predict(images=[PIL image])":
        return "predict", (), {"images": [Image.open(first)]}, [first]
    if name == "predict(images=[Path, PIL image])":
        return "predict", (), {"images": [first, Image.open(second)]}, [first, second]
    if name == "predict(images=[str path])":
        return "predict", (), {"images": [str(first)]}, [first]
    if name == "predict_image(Path)":
        return "predict_image", (first,), {}, [first]
    assert name == "predict_base64(images=[str])", name
    return "predict_base64", (), {"images": [base64.b64encode(first.read_bytes()).decode()]}, [first]


SYNC_CALLS = [
    "predict(images=[Path])",
    "predict(images=[PIL image])",
    "predict(images=[Path, PIL image])",
    "predict(images=[str path])",
    "predict_image(Path)",
    "predict_base64(images=[str])",
]


@pytest.mark.parametrize("call", SYNC_CALLS)
def test_sync_client_gets_predictions(served_bento: ServedBento, tmp_path: Path, call: str) -> None:
    paths = _write_samples(served_bento, tmp_path, 2)
    endpoint, args, kwargs, sent = _call(call, paths)
    with bentoml.SyncHTTPClient(served_bento.url, token=API_KEY) as client:
        answer = getattr(client, endpoint)(*args, **kwargs)
    _assert_same_predictions(answer, _reference(served_bento, sent), served_bento)


# predict_image is a raw-body endpoint ("root input" to BentoML): its clients stream such a file themselves, and
# that path of BentoML 1.4.39's client is broken in the cases below. These tests fail (strict) once BentoML fixes it.
ASYNC_CALLS = [call for call in SYNC_CALLS if not call.startswith("predict_image")]


@pytest.mark.parametrize("call", ASYNC_CALLS)
def test_async_client_gets_predictions(served_bento: ServedBento, tmp_path: Path, call: str) -> None:
    paths = _write_samples(served_bento, tmp_path, 2)
    endpoint, args, kwargs, sent = _call(call, paths)

    async def call_service() -> dict:
        async with bentoml.AsyncHTTPClient(served_bento.url, token=API_KEY) as client:
            return await getattr(client, endpoint)(*args, **kwargs)

    answer = asyncio.run(call_service())
    _assert_same_predictions(answer, _reference(served_bento, sent), served_bento)


@pytest.mark.xfail(
    strict=True,
    raises=RuntimeError,
    reason="BentoML 1.4.39's AsyncHTTPClient streams a root-input file with a sync iterator, which httpx's "
    "AsyncClient refuses before sending; use predict(images=[...]) from async code",
)
def test_async_client_predict_image_with_a_path(served_bento: ServedBento, tmp_path: Path) -> None:
    (path,) = _write_samples(served_bento, tmp_path, 1)

    async def call_service() -> dict:
        async with bentoml.AsyncHTTPClient(served_bento.url, token=API_KEY) as client:
            return await client.predict_image(path)

    _assert_same_predictions(asyncio.run(call_service()), _reference(served_bento, [path]), served_bento)


@pytest.mark.xfail(
    strict=True,
    raises=bentoml.exceptions.BentoMLException,
    reason="BentoML 1.4.39's client sends a root-input PIL image from its file object's current position (after "
    "the header Pillow has read), so the body is not an image; pass the path, or use predict(images=[image])",
)
def test_sync_client_predict_image_with_a_pil_image(served_bento: ServedBento, tmp_path: Path) -> None:
    (path,) = _write_samples(served_bento, tmp_path, 1)
    with bentoml.SyncHTTPClient(served_bento.url, token=API_KEY) as client:
        answer = client.predict_image(Image.open(path))
    _assert_same_predictions(answer, _reference(served_bento, [path]), served_bento)


def test_client_surfaces_the_service_refusal(served_bento: ServedBento, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with (
        bentoml.SyncHTTPClient(served_bento.url, token=API_KEY) as client,
        pytest.raises(bentoml.exceptions.BentoMLException) as raised,
    ):
        client.predict(images=[text])
    assert raised.value.error_code == 400
    # The client's message is the service's body: the one error shape, naming the image.
    body = json.loads(str(raised.value))
    assert list(body) == ["error"] and body["error"].startswith("image 0: "), body


def test_client_without_the_key_is_refused(served_bento: ServedBento, tmp_path: Path) -> None:
    (path,) = _write_samples(served_bento, tmp_path, 1)
    with (
        bentoml.SyncHTTPClient(served_bento.url) as client,
        pytest.raises(bentoml.exceptions.BentoMLException) as raised,
    ):
        client.predict(images=[path])
    assert raised.value.error_code == 401
    assert json.loads(str(raised.value)) == {
        "error": "Missing or wrong API key: send the header 'Authorization: Bearer <key>'."
    }
