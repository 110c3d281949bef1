"""What an upload costs the service is weighed before it is paid, on every path a request can take.

Decoding is weighed by the pixels each file's header announces, not by its bytes: a 12 KB bilevel PNG holds 39.7
million pixels. Such images are decoded in worker threads, so the event loop goes on answering (health checks
included); a request whose images decode to too many pixels together is refused before any is decoded; and one
image's size in bytes is bounded by the model's own image policy (`max_bytes`) on every route, a multipart part
included, while it is read.
"""

import base64
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mlops_assets_tests.service_fixtures import (
    API_KEY,
    API_KEY_ENV,
    ServedBento,
    metric_total,
    serve_in_own_home,
    settled_metrics,
)

pytestmark = pytest.mark.e2e
SIDE = 6300  # 39,690,000 pixels: under the policy's 40,000,000 per image
MAX_BYTES = 20_000_000  # the served model's image policy (the default profile's max_bytes)
MAX_REQUEST_PIXELS = 100_000_000


def _bilevel_png(side: int = SIDE) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (side, side), 1).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


BILEVEL = _bilevel_png()


def _decoded(metrics: str, where: str) -> float:
    return metric_total(metrics, "decoded_images_total", where=where)


def _files(*images: bytes) -> list[tuple]:
    return [("images", (f"{index}.png", data, "image/png")) for index, data in enumerate(images)]


def test_the_test_image_is_small_in_bytes_and_large_in_pixels() -> None:
    assert len(BILEVEL) < 64 * 1024
    with Image.open(io.BytesIO(BILEVEL)) as image:
        assert image.size == (SIDE, SIDE) and image.mode == "1"


def test_many_pixels_in_few_bytes_are_decoded_in_a_worker_thread_on_both_request_paths(
    served_bento: ServedBento,
) -> None:
    _, digit = served_bento.samples[0]
    with served_bento.client(timeout=120) as client:
        before = settled_metrics(client)
        direct = client.post("/predict", files=_files(BILEVEL))
        between = settled_metrics(client)
        # A body the direct path leaves to BentoML's API layer (not exactly {"images": [...]}), so its API method
        # decodes it: the same weighing applies there.
        through_bentoml = client.post(
            "/predict_base64", json={"images": [base64.b64encode(BILEVEL).decode()], "note": "via the API layer"}
        )
        after_heavy = settled_metrics(client)
        small = client.post("/predict", files=_files(digit))
        after = settled_metrics(client)
    for response in (direct, through_bentoml, small):
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == served_bento.model_tag
    assert _decoded(between, "worker_thread") - _decoded(before, "worker_thread") == 1
    assert _decoded(after_heavy, "worker_thread") - _decoded(between, "worker_thread") == 1
    assert _decoded(after_heavy, "event_loop") == _decoded(before, "event_loop")
    # A small image is cheaper to decode on the event loop than to hand to a thread.
    assert _decoded(after, "event_loop") - _decoded(after_heavy, "event_loop") == 1
    assert _decoded(after, "worker_thread") == _decoded(after_heavy, "worker_thread")


@pytest.mark.parametrize("count", [3, 40, 256])
def test_a_request_whose_images_decode_to_too_many_pixels_is_refused_before_any_is_decoded(
    served_bento: ServedBento, count: int
) -> None:
    pixels = count * SIDE * SIDE
    with served_bento.client(timeout=120) as client:
        before = settled_metrics(client)
        response = client.post("/predict", files=_files(*[BILEVEL] * count))
        after = settled_metrics(client)
        assert response.status_code == 413, response.text
        assert response.json() == {
            "error": f"The {count} images of this request decode to {pixels:,} pixels together, above the limit of "
            f"{MAX_REQUEST_PIXELS:,} pixels per request; send fewer or smaller images per request."
        }
        assert _decoded(after, "worker_thread") + _decoded(after, "event_loop") == _decoded(
            before, "worker_thread"
        ) + _decoded(before, "event_loop")
        # Two of them fit (79,380,000 pixels) and are answered.
        assert client.post("/predict", files=_files(BILEVEL, BILEVEL)).status_code == 200


@pytest.fixture(scope="module")
def one_worker_server(served_bento: ServedBento, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The test model in a bento served by one worker process, so every request reaches the same event loop."""
    from mlops_assets.packaging import build_service_bento
    from mlops_assets.resources.local_deployer import stop_process_group

    serving = {"api_workers": 1, "api_key_env": API_KEY_ENV, "prediction_log_sample_rate": 0.0}
    artifact, _ = build_service_bento(served_bento.model_tag, labels={"purpose": "decode-limits"}, serving=serving)
    url, pid = serve_in_own_home(artifact.bento_tag, tmp_path_factory.mktemp("one-worker") / "home")
    try:
        yield url
    finally:
        stop_process_group(pid)


def test_health_checks_are_answered_while_a_costly_request_decodes(one_worker_server: str) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    answers: list[httpx.Response] = []

    def send_heavy() -> None:
        with httpx.Client(base_url=one_worker_server, headers=headers, timeout=120) as heavy_client:
            answers.append(heavy_client.post("/predict", files=_files(BILEVEL, BILEVEL)))

    with httpx.Client(base_url=one_worker_server, timeout=120) as client:
        before = _decoded(settled_metrics(client), "worker_thread")
        heavy = threading.Thread(target=send_heavy)
        heavy.start()
        # The counter moves when the request's images are handed to worker threads, just before their decoding.
        while _decoded(client.get("/metrics").text, "worker_thread") == before:
            assert heavy.is_alive(), answers[0].text if answers else "the heavy request ended without an answer"
            time.sleep(0.01)
        live = client.get("/livez")
        # Answered by the same event loop while the two images (about 80 million pixels) were still being decoded.
        still_decoding = heavy.is_alive()
        heavy.join(timeout=120)
    assert live.status_code == 200
    assert still_decoding, "the heavy request was answered before the health check; it proves nothing"
    assert answers[0].status_code == 200, answers[0].text


def _zeros(count: int, sent: list[int]) -> Iterator[bytes]:
    chunk = b"\0" * 65536
    while count > 0:
        piece = chunk[: min(count, len(chunk))]
        count -= len(piece)
        sent[0] += len(piece)
        yield piece


def _form_stream(part_bytes: int, sent: list[int]) -> Iterator[bytes]:
    yield b'--XyZ\r\nContent-Disposition: form-data; name="images"; filename="big.png"\r\n\r\n'
    yield from _zeros(part_bytes, sent)
    yield b"\r\n--XyZ--\r\n"


def test_a_multipart_part_above_the_policy_limit_gets_413_while_it_is_read(served_bento: ServedBento) -> None:
    sent = [0]
    total = 60_000_000  # within the 64 MiB a whole form may have, three times the per-image limit
    with served_bento.client() as client:
        response = client.post(
            "/predict",
            content=_form_stream(total, sent),
            headers={"Content-Type": "multipart/form-data; boundary=XyZ"},
        )
    assert response.status_code == 413, response.text
    assert response.json() == {
        "error": f"Form part 0 ('big.png') is above the limit of {MAX_BYTES:,} bytes per image; send a smaller image."
    }
    assert response.headers["connection"] == "close"
    # Refused once the part passed the limit: the client never got to send the rest (socket buffers hold a few MB).
    assert sent[0] < total * 2 // 3, sent


def test_the_per_image_limit_is_the_same_on_every_route(served_bento: ServedBento) -> None:
    exactly = b"\0" * MAX_BYTES
    one_more = exactly + b"\0"
    with served_bento.client(timeout=120) as client:
        # At the limit: read, and refused only for not being an image.
        at_limit = client.post("/predict", files=_files(exactly))
        assert at_limit.status_code == 400, at_limit.text
        assert at_limit.json()["error"].startswith("image 0: cannot be decoded: The bytes are not a recognised image")
        part = client.post("/predict", files=_files(one_more))
        raw = client.post("/predict_image", content=one_more, headers={"Content-Type": "image/png"})
        encoded = client.post("/predict_base64", json={"images": [base64.b64encode(one_more).decode()]})
    assert [response.status_code for response in (part, raw, encoded)] == [413, 413, 413]
    assert part.json() == {
        "error": f"Form part 0 ('0.png') is above the limit of {MAX_BYTES:,} bytes per image; send a smaller image."
    }
    assert raw.json() == {
        "error": f"The image is {MAX_BYTES + 1:,} bytes, above the limit of {MAX_BYTES:,} bytes per image; "
        "send a smaller image."
    }
    assert encoded.json() == {
        "error": f"image 0: {MAX_BYTES + 1:,} bytes is above the limit of {MAX_BYTES:,} bytes per image; "
        "send a smaller image."
    }


def test_a_text_field_is_refused_as_a_text_field(served_bento: ServedBento) -> None:
    # What `curl -F images=hello` sends: a form part with a name and no filename.
    with served_bento.client() as client:
        response = client.post("/predict", files={"images": (None, b"hello")})
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "Form part 0 of 'images' is not a file: it is a text field (no filename); send each image as a "
        "file, e.g. curl -F images=@digit.png .../predict."
    }


def test_the_served_limit_comes_from_the_model_package(served_bento: ServedBento) -> None:
    from mlops_assets import settings
    from mlops_assets.lib.models.model_package import package_policy, read_package_document

    document = read_package_document(Path(settings.artifacts_dir() / "service-model"))
    assert package_policy(document).max_bytes == MAX_BYTES
