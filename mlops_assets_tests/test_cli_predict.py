"""`mlops predict` against a real served bento whose model has a non-ASCII label: labels print as the model names
them, the API key is sent, every answered file gets its line and every refusal an `error:` line naming the file and
the service's message."""

import os
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlops_assets import settings
from mlops_assets.cli import main
from mlops_assets.cli_predict import format_prediction
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets.lib.models.plugins.base import TrainSettings
from mlops_assets.lib.models.training import train_model
from mlops_assets_tests.conftest import free_port, write_png

pytestmark = pytest.mark.e2e
NON_ASCII_LABEL = "chat noir (été)"
API_KEY = "cli-key-93b2"


@dataclass(frozen=True)
class LabelServer:
    url: str
    model_tag: str
    dark_image: Path


@pytest.fixture(scope="module")
def non_ascii_server(tmp_path_factory: pytest.TempPathFactory) -> LabelServer:
    """A softmax model on two generated classes, dark ones labelled `chat noir (été)`, served from its bento."""
    settings.export_environment()
    from mlops_assets.packaging import build_service_bento, store_model
    from mlops_assets.resources.local_deployer import start_bento_server, stop_process_group

    root = tmp_path_factory.mktemp("non-ascii-labels")
    rng = np.random.default_rng(0)
    for label, level in ((NON_ASCII_LABEL, 40), ("bright", 215)):
        for index in range(16):
            write_png(root / label / f"{index}.png", np.clip(rng.normal(level, 12, (8, 8)), 0, 255))
    manifest = scan_dataset(root)
    data = build_validated_dataset(manifest, GeometryConfig(), settings.artifacts_dir() / "non-ascii-data")
    trained = train_model(
        data,
        "softmax",
        {},
        TrainSettings(epochs=20, learning_rate=0.05, device="cpu"),
        settings.artifacts_dir() / "non-ascii-model",
    )
    model_tag = store_model(Path(trained.directory), "non-ascii-classifier", trained.weights_sha256[:20], {}, {})
    serving = {"api_workers": 1, "api_key_env": "MLOPS_API_KEY", "prediction_log_sample_rate": 0.0}
    artifact, _ = build_service_bento(model_tag, labels={"purpose": "cli-tests"}, serving=serving)
    # A starting BentoML server empties $BENTOML_HOME/prometheus_multiproc_dir, which would blank the metrics of the
    # shared server the other service tests read. This one gets its own home, reaching the same store by links.
    store = settings.bentoml_home()
    own_home = tmp_path_factory.mktemp("non-ascii-home")
    (own_home / "bentoml").mkdir()
    for kind in ("bentos", "models"):
        (own_home / "bentoml" / kind).symlink_to(store / kind, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("MLOPS_HOME", "DAGSTER_HOME", "BENTOML_HOME"):
            patch.setenv(variable, os.environ.get(variable, ""))  # restored on exit, whatever the server start sets
        patch.setenv("MLOPS_HOME", str(own_home))
        # Only the server gets the key here; each test sets it for the CLI itself.
        patch.setenv("MLOPS_API_KEY", API_KEY)
        port = free_port()
        process = start_bento_server(
            artifact.bento_tag, "127.0.0.1", port, own_home / "logs" / "non-ascii-server.log", 120
        )
    dark = write_png(root.parent / "dark-query.png", np.full((8, 8), 35))
    try:
        yield LabelServer(f"http://127.0.0.1:{port}", model_tag, dark)
    finally:
        stop_process_group(process.pid)


def test_predict_prints_a_non_ascii_label_as_written(
    non_ascii_server: LabelServer, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_API_KEY", API_KEY)
    image = non_ascii_server.dark_image
    answer = httpx.post(
        f"{non_ascii_server.url}/predict",
        files={"images": (image.name, image.read_bytes(), "image/png")},
        headers={"Authorization": f"Bearer {API_KEY}"},
    ).json()
    assert answer["predictions"][0]["label"] == NON_ASCII_LABEL

    assert main(["predict", str(image), "--url", non_ascii_server.url]) == 0

    confidence = answer["predictions"][0]["confidence"]
    expected = f"{image}: label chat noir (été), confidence {confidence:.3f}, model {non_ascii_server.model_tag}"
    # Each request's own id (for `mlops feedback --label REQUEST_ID LABEL`) ends the line.
    assert re.fullmatch(re.escape(expected) + r", request_id [0-9a-f]{32}\n", capsys.readouterr().out)


def test_predict_without_the_key_names_the_file_and_the_refusal(
    non_ascii_server: LabelServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("MLOPS_API_KEY", raising=False)
    image = non_ascii_server.dark_image
    assert main(["predict", str(image), "--url", non_ascii_server.url]) == 1
    output = capsys.readouterr()
    assert output.out == ""
    assert output.err == (
        f"error: {image}: HTTP 401: Missing or wrong API key: send the header 'Authorization: Bearer <key>'.\n"
    )


def test_every_answered_file_gets_its_line_then_every_other_an_error_line(
    non_ascii_server: LabelServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLOPS_API_KEY", API_KEY)
    dark = non_ascii_server.dark_image
    bright = write_png(tmp_path / "bright.png", np.full((8, 8), 220))
    text = tmp_path / "notimage.jpg"
    text.write_text("not an image")
    folder = tmp_path / "photos"
    folder.mkdir()
    missing = tmp_path / "missing.png"
    files = [dark, text, bright, folder, missing]

    assert main(["predict", *map(str, files), "--url", non_ascii_server.url]) == 1

    output = capsys.readouterr()
    answered = output.out.splitlines()
    assert [line.split(": label ")[0] for line in answered] == [str(dark), str(bright)]
    assert answered[0].startswith(f"{dark}: label {NON_ASCII_LABEL}, confidence ")
    assert answered[1].startswith(f"{bright}: label bright, confidence ")
    assert all(
        re.search(f", model {re.escape(non_ascii_server.model_tag)}, request_id [0-9a-f]{{32}}$", line)
        for line in answered
    )
    errors = output.err.splitlines()
    assert errors[0].startswith(f"error: {text}: HTTP 400: image 0: cannot be decoded: The bytes are not a recognised")
    assert errors[1:] == [
        f"error: {folder}: is a folder, not an image file; pass the image files in it (e.g. {folder / '*.png'})",
        f"error: {missing}: no such file; check the path",
    ]


def test_predict_of_a_non_image_names_the_file_and_the_service_message(
    non_ascii_server: LabelServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("MLOPS_API_KEY", API_KEY)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    assert main(["predict", str(text), "--url", non_ascii_server.url]) == 1
    # The service's own message, not its JSON body.
    assert capsys.readouterr().err == (
        f"error: {text}: HTTP 400: image 0: cannot be decoded: The bytes are not a recognised image; send an image "
        "file (PNG, JPEG, WebP, BMP, TIFF or GIF).\n"
    )


def test_format_prediction_keeps_every_character_of_the_label() -> None:
    answer = {
        "model_version": "m:1",
        "predictions": [{"label": '猫 «chat» "noir" (été)', "confidence": 0.91234, "probabilities": {}}],
    }
    assert format_prediction("a b.png", answer) == 'a b.png: label 猫 «chat» "noir" (été), confidence 0.912, model m:1'


def test_format_prediction_ends_with_the_request_id_feedback_needs() -> None:
    answer = {
        "model_version": "m:1",
        "request_id": "0f" * 16,
        "predictions": [{"label": "7", "confidence": 0.5, "probabilities": {}}],
    }
    assert format_prediction("a.png", answer) == f"a.png: label 7, confidence 0.500, model m:1, request_id {'0f' * 16}"
