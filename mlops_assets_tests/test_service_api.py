"""The served bento over HTTP: three input forms, metadata, authentication, metrics and the prediction log."""

import base64
import io
import json
import re
import time
from pathlib import Path

import bentoml
import numpy as np
import pytest
from PIL import Image

from mlops_assets.lib.models.model_package import load_package, package_policy, read_package_document
from mlops_assets.lib.monitoring.embedding_projection import compact_embedding
from mlops_assets_tests.service_fixtures import ServedBento, metric_total, settled_metrics

pytestmark = pytest.mark.e2e
PREDICT_ENDPOINTS = ("/predict", "/predict_image", "/predict_base64")


def _assert_same_prediction(left: dict, right: dict) -> None:
    assert left["label"] == right["label"]
    for label, value in left["probabilities"].items():
        assert right["probabilities"][label] == pytest.approx(value, abs=1e-5)


def test_a_batch_answers_in_request_order_like_single_requests(served_bento: ServedBento) -> None:
    samples = served_bento.samples[:8]
    with served_bento.client() as client:
        batch = client.post("/predict", files=[("images", (f"{i}.png", data)) for i, (_, data) in enumerate(samples)])
        assert batch.status_code == 200, batch.text
        body = batch.json()
        assert body["model_version"] == served_bento.model_tag
        assert len(body["predictions"]) == len(samples)
        for (_, data), batched in zip(samples, body["predictions"], strict=True):
            single = client.post("/predict", files={"images": ("x.png", data)})
            assert single.status_code == 200, single.text
            _assert_same_prediction(single.json()["predictions"][0], batched)
            assert batched["confidence"] == max(batched["probabilities"].values())
    correct = sum(p["label"] == label for p, (label, _) in zip(body["predictions"], samples, strict=True))
    assert correct >= len(samples) // 2, "a 3-epoch CNN on digits should get most test images right"


def test_raw_bytes_and_base64_json_answer_like_multipart(served_bento: ServedBento) -> None:
    _, data = served_bento.samples[0]
    with served_bento.client() as client:
        multipart = client.post("/predict", files={"images": ("x.png", data)}).json()
        raw = client.post("/predict_image", content=data, headers={"Content-Type": "image/png"})
        # Plain base64, and a data URL as a browser's FileReader gives it.
        text = base64.b64encode(data).decode()
        data_urls = [f"data:image/png;base64,{text}", f" DATA:image/PNG;charset=utf-8;BASE64,{text}\n"]
        encoded = client.post("/predict_base64", json={"images": [text, *data_urls]})
    assert raw.status_code == 200, raw.text
    assert encoded.status_code == 200, encoded.text
    assert raw.json()["model_version"] == encoded.json()["model_version"] == served_bento.model_tag
    _assert_same_prediction(multipart["predictions"][0], raw.json()["predictions"][0])
    assert len(encoded.json()["predictions"]) == 3
    for prediction in encoded.json()["predictions"]:
        _assert_same_prediction(multipart["predictions"][0], prediction)


def test_answers_given_without_bentomls_api_layer_are_byte_identical_to_its_own(served_bento: ServedBento) -> None:
    # The request guard's direct path answers `{"images": [...]}` itself; with another key next to it the body is not
    # one it takes, so BentoML's API layer parses, validates and calls the API method, which ignores the extra key.
    images = [base64.b64encode(data).decode() for _, data in served_bento.samples[:3]]
    with served_bento.client() as client:
        direct = client.post("/predict_base64", json={"images": images})
        through_bentoml = client.post("/predict_base64", json={"images": images, "note": "ignored"})
    for response in (direct, through_bentoml):
        assert response.status_code == 200, response.text
        assert response.headers["server"] == "BentoML Service/ImageClassifier"
        assert response.headers["content-type"] == "application/json"
    # Byte for byte the same but for each answer's own request id (32 hex digits, new per request).
    ids = [re.search(rb'"request_id":"([0-9a-f]{32})"', r.content).group(1) for r in (direct, through_bentoml)]
    assert ids[0] != ids[1]
    assert direct.content.replace(ids[0], b"<id>") == through_bentoml.content.replace(ids[1], b"<id>")
    assert len(direct.json()["predictions"]) == 3


def test_metadata_returns_version_lineage_and_label_set(served_bento: ServedBento) -> None:
    import bentoml

    stored = bentoml.models.get(served_bento.model_tag).info
    with served_bento.client(authenticated=False) as client:
        response = client.get("/metadata")
    assert response.status_code == 200, response.text
    metadata = response.json()
    assert metadata["model_version"] == served_bento.model_tag
    assert metadata["label_set"] == [str(digit) for digit in range(10)]
    # Exactly what the model was stored with: the store labels, and the lineage including the data version.
    assert metadata["labels"] == dict(stored.labels) == {"plugin": "cnn"}
    assert metadata["lineage"] == json.loads(json.dumps(stored.metadata))
    assert len(metadata["lineage"]["data_version"]) == 64


@pytest.mark.parametrize("endpoint", PREDICT_ENDPOINTS)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Basic dGVzdDp0ZXN0", "Bearer"])
def test_prediction_endpoints_refuse_requests_without_the_api_key(
    served_bento: ServedBento, endpoint: str, authorization: str | None
) -> None:
    _, data = served_bento.samples[0]
    headers = {"Authorization": authorization} if authorization else {}
    with served_bento.client(authenticated=False) as client:
        if endpoint == "/predict":
            response = client.post(endpoint, files={"images": ("x.png", data)}, headers=headers)
        elif endpoint == "/predict_image":
            response = client.post(endpoint, content=data, headers={**headers, "Content-Type": "image/png"})
        else:
            response = client.post(endpoint, json={"images": [base64.b64encode(data).decode()]}, headers=headers)
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]


def test_health_metadata_and_metrics_stay_open_without_a_key(served_bento: ServedBento) -> None:
    with served_bento.client(authenticated=False) as client:
        for path in ("/readyz", "/livez", "/metadata", "/metrics"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.text)


def test_metrics_count_predictions_per_label_and_confidence(served_bento: ServedBento) -> None:
    _, data = served_bento.samples[1]
    with served_bento.client() as client:
        # The server may have served other tests: every count is compared as a difference across one request.
        before = settled_metrics(client)
        answer = client.post("/predict", files={"images": ("x.png", data)})
        assert answer.status_code == 200, answer.text
        after = settled_metrics(client)
    label = answer.json()["predictions"][0]["label"]

    def added(series: str, **labels: str) -> float:
        return metric_total(after, series, **labels) - metric_total(before, series, **labels)

    assert added("predictions_per_label_total", label=label) == 1
    assert added("predictions_per_label_total") == 1
    assert added("prediction_confidence_count") == 1
    # A lone image: one forward pass of one image, one queue wait observed.
    assert (added("inference_batch_size_count"), added("inference_batch_size_sum")) == (1, 1)
    assert added("inference_queue_wait_seconds_count") == 1
    assert added("bentoml_service_request_total", endpoint="/predict", http_response_code="200") == 1


def test_prediction_log_records_input_statistics_answer_and_model_version(served_bento: ServedBento) -> None:
    _, data = served_bento.samples[2]
    with served_bento.client() as client:
        answer = client.post("/predict_image", content=data, headers={"Content-Type": "image/png"}).json()
    expected = answer["predictions"][0]
    deadline = time.monotonic() + 10
    logged: list[dict] = []
    while time.monotonic() < deadline:
        records = [
            json.loads(line)
            for path in (served_bento.home / "predictions").glob("*.jsonl")
            for line in path.read_text().splitlines()
        ]
        logged = [
            record
            for record in records
            if record["endpoint"] == "/predict_image" and abs(record["confidence"] - expected["confidence"]) < 1e-5
        ]
        if logged:
            break
        time.sleep(0.2)
    assert logged, "the sampled request never reached the prediction log"
    record = logged[-1]
    assert record["model_version"] == served_bento.model_tag
    assert record["label"] == expected["label"]
    assert record["confidence"] == pytest.approx(expected["confidence"], abs=1e-5)
    assert (record["width"], record["height"], record["mode"]) == (8, 8, "L")
    # The model input is the 8x8 image itself: its mean and standard deviation on [0, 1].
    pixels = np.asarray(Image.open(io.BytesIO(data)), dtype=np.float32) / 255.0
    assert record["brightness"] == pytest.approx(float(pixels.mean()), abs=1e-6)
    assert record["contrast"] == pytest.approx(float(pixels.std()), abs=1e-6)
    # The CNN's 128 penultimate activations, compacted to the default bound (monitoring.capture.embeddings.max_dims).
    assert len(record["embedding"]) == 32
    assert all(isinstance(value, float) for value in record["embedding"])


def test_each_logged_embedding_is_the_models_compacted_embedding_of_its_own_image(served_bento: ServedBento) -> None:
    # Several images in one request: each record carries its own image's embedding (rows not shifted), compacted
    # exactly as monitoring compacts the baseline's.
    model_dir = Path(bentoml.models.get(served_bento.model_tag).path)
    model, policy = load_package(model_dir, device="cpu"), package_policy(read_package_document(model_dir))
    images = [data for _, data in served_bento.samples[:3]]
    files = [("images", (f"{index}.png", data, "image/png")) for index, data in enumerate(images)]
    with served_bento.client() as client:
        request_id = client.post("/predict", files=files).json()["request_id"]
    deadline = time.monotonic() + 10
    logged: list[dict] = []
    while time.monotonic() < deadline and len(logged) < len(images):
        time.sleep(0.2)
        logged = sorted(
            (
                record
                for path in (served_bento.home / "predictions").glob("*.jsonl")
                for record in map(json.loads, path.read_text().splitlines())
                if record["request_id"] == request_id
            ),
            key=lambda record: record["index"],
        )
    assert [record["index"] for record in logged] == [0, 1, 2]
    spec = model.spec
    pixels = np.stack(
        [policy.decode_input(policy.open_input(data, spec.height, spec.width, spec.channels)) for data in images]
    )
    _, embeddings = model.predict_uint8_with_embedding(pixels)
    expected = compact_embedding(embeddings, 32)
    for record in logged:
        # Rounded to 4 decimals on both sides; another thread count may move a value across a rounding boundary.
        np.testing.assert_allclose(record["embedding"], expected[record["index"]], rtol=0, atol=1.5e-4)
    assert not np.allclose(expected[0], expected[1], rtol=0, atol=1e-3)  # images told apart by their embeddings


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("api_workers", 0),
        ("max_batch_size", 0),
        ("torch_threads", 0),
        ("prediction_log_sample_rate", 1.5),
        ("rebalance_interval_ms", -1),
        ("max_batch_sise", 32),
    ],
)
def test_invalid_serving_settings_are_refused_before_a_bento_is_built(
    served_bento: ServedBento, setting: str, value: float
) -> None:
    import bentoml

    from mlops_assets.lib.serving.serving_arguments import ServingConfigError
    from mlops_assets.packaging import build_service_bento

    before = {str(bento.tag) for bento in bentoml.bentos.list()}
    with pytest.raises(ServingConfigError, match=rf"deployments/<env>\.yaml\): serving\.{setting} = {value}: "):
        build_service_bento(served_bento.model_tag, labels={"purpose": "bad-settings"}, serving={setting: value})
    assert {str(bento.tag) for bento in bentoml.bentos.list()} == before
