"""The service's pure helpers: request guard decisions, prediction-log sampling and writing, inference context,
and the decoding shortcuts the request path takes."""

import io
import json
import time

import numpy as np
import pytest
import torch
from PIL import Image

from mlops_assets.lib.data.preprocessing import decode_image, to_uint8_array
from mlops_assets.lib.serving.inference_runtime import inference_context, uses_mixed_precision
from mlops_assets.lib.serving.prediction_log import PredictionLog, prediction_record
from mlops_assets.lib.serving.request_guard import GuardedRoute, Refusal, check_body, check_request

ROUTE = GuardedRoute(("image/*",), 1000, "an example")
FORM = GuardedRoute(("multipart/form-data",), 1000, "a form", file_field="images")


def test_guard_requires_the_bearer_key_only_when_one_is_configured() -> None:
    headers = {"content-type": "image/png", "content-length": "10"}
    assert check_request(ROUTE, headers, api_key=None) is None
    for refused in (
        check_request(ROUTE, headers, api_key="k"),
        check_request(ROUTE, {**headers, "authorization": "Bearer x"}, api_key="k"),
    ):
        assert refused.status == 401 and "Authorization: Bearer <key>" in refused.message, refused
    assert check_request(ROUTE, {**headers, "authorization": "Bearer k"}, api_key="k") is None


@pytest.mark.parametrize(
    ("headers", "status", "message"),
    [
        ({"content-type": "text/plain", "content-length": "10"}, 415, "Content-Type 'text/plain' is not accepted"),
        ({"content-type": "image/png", "content-length": "0"}, 400, "body is empty"),
        ({"content-type": "image/png", "content-length": "1001"}, 413, "1,001 bytes, above the limit of 1,000"),
        ({"content-type": "image/png", "content-length": "ten"}, 400, "Content-Length 'ten' is not a number"),
    ],
)
def test_guard_refuses_wrong_type_missing_empty_or_oversized_bodies(headers: dict, status: int, message: str) -> None:
    refused = check_request(ROUTE, headers, api_key=None)
    assert refused.status == status and message in refused.message, refused


def test_guard_accepts_only_file_parts_in_the_named_field() -> None:
    headers = {"content-type": "multipart/form-data; boundary=b"}
    good = b'--b\r\nContent-Disposition: form-data; name="images"; filename="a.png"\r\n\r\nxx\r\n--b--\r\n'
    assert check_body(FORM, headers, good) is None
    text_part = b'--b\r\nContent-Disposition: form-data; name="images"\r\n\r\nhttp://example.com/a.png\r\n--b--\r\n'
    not_a_file = check_body(FORM, headers, text_part)
    assert not_a_file == Refusal(
        400,
        "Form part 0 of 'images' is not a file: it is a text field (no filename); send each image as a file, "
        "e.g. a form.",
    )
    other = check_body(FORM, headers, good.replace(b'name="images"', b'name="image"'))
    assert other.status == 400 and "Unexpected form part 'image'" in other.message, other
    url = check_body(ROUTE, {}, b"https://example.com/x.png")
    assert url.status == 400 and "does not fetch URLs" in url.message, url


def test_prediction_log_samples_at_its_rate_and_writes_json_lines(tmp_path) -> None:
    assert not any(PredictionLog(tmp_path / "never", 0.0).should_sample() for _ in range(100))
    log = PredictionLog(tmp_path / "all", 1.0, seed=0)
    assert all(log.should_sample() for _ in range(100))
    half = PredictionLog(tmp_path / "half", 0.5, seed=0)
    assert 350 < sum(half.should_sample() for _ in range(1000)) < 650
    stats = {"width": 8, "height": 8, "mode": "L", "brightness": 0.3, "contrast": 0.2}
    assert log.submit([prediction_record("m:1", "3", 0.9, stats, "/predict")])
    log.close()
    lines = [json.loads(line) for path in (tmp_path / "all").glob("*.jsonl") for line in path.read_text().splitlines()]
    assert lines == [{**lines[0], "model_version": "m:1", "label": "3", "confidence": 0.9, **stats}]
    assert time.strftime("%Y") in lines[0]["timestamp"]
    with pytest.raises(ValueError, match="sample rate"):
        PredictionLog(tmp_path, 1.5)


def _logged(directory) -> list[dict]:
    return [json.loads(line) for path in directory.glob("*.jsonl") for line in path.read_text().splitlines()]


def test_prediction_log_writes_every_flush_interval_without_being_closed(tmp_path) -> None:
    log = PredictionLog(tmp_path, 1.0, flush_interval_s=0.05)
    stats = {"width": 8, "height": 8, "mode": "L", "brightness": 0.3, "contrast": 0.2}
    try:
        for label in ("1", "2"):
            assert log.submit([prediction_record("m:1", label, 0.5, stats, "/predict")])
        deadline = time.monotonic() + 10
        while len(_logged(tmp_path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [record["label"] for record in _logged(tmp_path)] == ["1", "2"]
    finally:
        log.close()


def test_prediction_log_drops_and_counts_records_beyond_its_backlog_bound(tmp_path, monkeypatch) -> None:
    from mlops_assets.lib.serving import prediction_log

    monkeypatch.setattr(prediction_log, "_QUEUE_LIMIT", 2)
    # The writer does not wake before close(), so the backlog only grows here.
    log = PredictionLog(tmp_path, 1.0, flush_interval_s=3600)
    stats = {"width": 8, "height": 8, "mode": "L", "brightness": 0.3, "contrast": 0.2}
    accepted = [log.submit([prediction_record("m:1", str(i), 0.5, stats, "/predict")] * 2) for i in range(4)]
    log.close()
    assert accepted == [True, True, False, False]
    assert log.dropped == 4
    assert [record["label"] for record in _logged(tmp_path)] == ["0", "0", "1", "1"]
    with pytest.raises(ValueError, match="flush_interval_s must be positive"):
        PredictionLog(tmp_path, 1.0, flush_interval_s=0)


def test_inference_context_disables_autograd_and_picks_mixed_precision_only_on_cuda() -> None:
    assert uses_mixed_precision("cuda:0") and not uses_mixed_precision("cpu")
    layer = torch.nn.Linear(2, 2)
    with inference_context("cpu"):
        assert torch.is_inference_mode_enabled()
        output = layer(torch.ones(1, 2))
    assert not torch.is_inference_mode_enabled()
    assert output.is_inference() and not output.requires_grad and output.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inference_context_runs_float16_on_cuda() -> None:
    layer = torch.nn.Linear(2, 2).cuda()
    with inference_context("cuda"):
        assert torch.is_inference_mode_enabled()
        assert layer(torch.ones(1, 2, device="cuda")).dtype == torch.float16


def test_decode_applies_the_exif_orientation_and_conversion_shortcuts_keep_pixels() -> None:
    pixels = np.arange(6 * 4 * 3, dtype=np.uint8).reshape(4, 6, 3) * 2
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees clockwise to view
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", exif=exif)
    decoded = decode_image(buffer.getvalue())
    assert decoded.size == (4, 6)
    np.testing.assert_array_equal(np.asarray(decoded), np.rot90(pixels, k=-1))
    # Same mode in and out (no conversion copy) gives exactly what an explicit conversion gives.
    for mode, channels in (("RGB", 3), ("L", 1)):
        image = decoded.convert(mode)
        expected = np.asarray(image.convert(mode).resize((3, 3), Image.Resampling.BILINEAR), dtype=np.uint8)
        expected = expected[np.newaxis] if channels == 1 else expected.transpose(2, 0, 1)
        np.testing.assert_array_equal(to_uint8_array(image, 3, 3, channels), expected)
