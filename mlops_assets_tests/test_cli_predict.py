"""`mlops predict` against a real served bento whose model has a non-ASCII label: labels print as the model names
them, the API key is sent, and a refusal names the file and the service's message."""

import os
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlops_assets import settings
from mlops_assets.cli import format_prediction, main
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
    expected = f"{image}: label chat noir (été), confidence {confidence:.3f}, model {non_ascii_server.model_tag}\n"
    assert capsys.readouterr().out == expected


def test_predict_without_the_key_names_the_file_and_the_refusal(
    non_ascii_server: LabelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPS_API_KEY", raising=False)
    image = non_ascii_server.dark_image
    with pytest.raises(SystemExit) as raised:
        main(["predict", str(image), "--url", non_ascii_server.url])
    assert str(raised.value) == (
        f"{image}: HTTP 401: Missing or wrong API key: send the header 'Authorization: Bearer <key>'."
    )


def test_predict_of_a_non_image_names_the_file_and_the_service_message(
    non_ascii_server: LabelServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MLOPS_API_KEY", API_KEY)
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(SystemExit) as raised:
        main(["predict", str(text), "--url", non_ascii_server.url])
    message = str(raised.value)
    # The service's own message, not its JSON body.
    assert message.startswith(f"{text}: HTTP 400: image 0: "), message
    assert "image" in message.removeprefix(f"{text}: HTTP 400: image 0: ") and "{" not in message


def test_format_prediction_keeps_every_character_of_the_label() -> None:
    answer = {
        "model_version": "m:1",
        "predictions": [{"label": '猫 «chat» "noir" (été)', "confidence": 0.91234, "probabilities": {}}],
    }
    assert format_prediction("a b.png", answer) == 'a b.png: label 猫 «chat» "noir" (été), confidence 0.912, model m:1'
