"""Shared fixtures: every test session gets its own MLOPS_HOME, so nothing touches the project's `.mlops/`."""

import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlops_assets.lib.sample_data import export_digits
from mlops_assets_tests.service_fixtures import served_bento  # noqa: F401 - the served bento, shared by service tests


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("mlops_home")
    previous = {key: os.environ.get(key) for key in ("MLOPS_HOME", "MLOPS_DATASET", "DAGSTER_HOME", "BENTOML_HOME")}
    os.environ["MLOPS_HOME"] = str(home)
    os.environ.pop("MLOPS_DATASET", None)
    yield home
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def digits_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real dataset: 40 digits per class from the bundled sample, as PNG files."""
    return export_digits(tmp_path_factory.mktemp("data") / "digits40", per_class_limit=40)


def write_png(path: Path, pixels: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
