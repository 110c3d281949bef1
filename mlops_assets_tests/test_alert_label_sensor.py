"""The alert-label sensor: one alert per input the service kept for an alert label, with the input's saved file."""

from __future__ import annotations

import io
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from mlops_assets.defs.monitoring.sensors import alert_label_sensor
from mlops_assets.lib.monitoring.alerts import read_alerts
from mlops_assets.lib.monitoring.capture import ALERT_INPUTS, Capture
from mlops_assets.lib.monitoring.settings import CaptureSettings
from mlops_assets.lib.serving.prediction_store import FolderPredictionStore
from mlops_assets.resources.prediction_logs import LocalPredictionLogs
from mlops_assets_tests.monitoring_fixtures import webhook_receiver

REQUEST_ID = "0123456789abcdef0123456789abcdef"


def _png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _keep(predictions: Path, request_id: str, labels: list[str], confidences: list[float]) -> list[bytes]:
    """What the service does after answering: the capture writers keep the inputs of alert labels."""
    uploads = [_png(40 * index) for index in range(len(labels))]
    capture = Capture(FolderPredictionStore(predictions), CaptureSettings(alert_labels={"drone": 0.8}))
    capture.keep("classifier:v3", "/predict", request_id, uploads, labels, confidences)
    capture.close()
    return uploads


def _tick(predictions: Path, cursor: str | None) -> tuple[dg.SkipReason, str | None]:
    with dg.build_sensor_context(
        cursor=cursor, resources={"prediction_logs": LocalPredictionLogs(root=str(predictions))}
    ) as context:
        result = alert_label_sensor(context)
        return result, context.cursor


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_each_alert_label_input_is_alerted_once_with_its_saved_file(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictions = home / "predictions"
    # Image 0: drone above its threshold (alert); 1: drone below it; 2: another label.
    uploads = _keep(predictions, REQUEST_ID, ["drone", "drone", "bird"], [0.93, 0.6, 0.99])
    with webhook_receiver() as receiver:
        monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", receiver.url)
        first, cursor = _tick(predictions, None)
        again, cursor_again = _tick(predictions, cursor)
        # A tick without a cursor reads everything again; the event ids keep it from alerting twice.
        replay, _ = _tick(predictions, None)
    saved = home / "alerts" / "inputs" / f"{REQUEST_ID}-0.png"
    assert first.skip_message == "1 alert-label alert(s) sent; 0 kept input(s) unusable."
    assert again.skip_message == "0 alert-label alert(s) sent; 0 kept input(s) unusable."
    assert replay.skip_message == "1 alert-label alert(s) sent; 0 kept input(s) unusable."
    [name] = FolderPredictionStore(predictions / ALERT_INPUTS).names()
    assert json.loads(cursor) == json.loads(cursor_again) == {name: 1}
    assert saved.read_bytes() == uploads[0]
    [posted] = receiver.received
    assert posted["kind"] == "alert label"
    assert posted["event_id"] == f"alert-label-{REQUEST_ID}-0"
    assert posted["title"] == (
        f"'drone' predicted with confidence 0.9300 (alert at 0.8) by classifier:v3; input saved at {saved}"
    )
    assert (posted["details"]["input"], posted["details"]["index"]) == (str(saved), 0)
    assert posted["details"]["kept_in"] == f"{predictions / ALERT_INPUTS} ({name} record 1)"
    [logged] = read_alerts(home / "alerts" / "alerts.jsonl")
    assert (logged["event_id"], logged["delivery_error"]) == (f"alert-label-{REQUEST_ID}-0", "")


def test_an_undelivered_alert_keeps_the_cursor_and_is_delivered_by_a_later_tick(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictions = home / "predictions"
    _keep(predictions, REQUEST_ID, ["drone"], [0.85])
    with webhook_receiver(status=503) as receiver:
        monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", receiver.url)
        with pytest.raises(Exception, match=f"1 alert-label alert\\(s\\) not delivered: alert-label-{REQUEST_ID}-0: "):
            _tick(predictions, None)
        receiver.status = 200
        delivered, cursor = _tick(predictions, None)
    assert delivered.skip_message == "1 alert-label alert(s) sent; 0 kept input(s) unusable."
    assert cursor is not None
    assert len(receiver.received) == 2  # one refused, one taken
    [logged] = read_alerts(home / "alerts" / "alerts.jsonl")
    assert logged["delivery_error"] == ""


def test_a_damaged_kept_input_is_skipped_and_named(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_ALERT_WEBHOOK_URL", raising=False)
    folder = home / "predictions" / ALERT_INPUTS
    folder.mkdir(parents=True)
    (folder / "2026-05-01.7.jsonl").write_text(json.dumps({"request_id": REQUEST_ID, "label": "drone"}) + "\n")
    result, cursor = _tick(home / "predictions", None)
    assert result.skip_message == "0 alert-label alert(s) sent; 1 kept input(s) unusable."
    assert json.loads(cursor) == {"2026-05-01.7.jsonl": 1}
    assert read_alerts(home / "alerts" / "alerts.jsonl") == []
