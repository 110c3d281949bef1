"""Shared fixtures: every test session gets its own MLOPS_HOME, so nothing touches the project's `.mlops/`."""

import io
import os
import signal
import socket
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mlops_assets.lib.data.sample_data import export_digits
from mlops_assets_tests.gcs_emulator import gcs_emulator  # noqa: F401 - one GCS emulator per session
from mlops_assets_tests.postgres_server import postgres_server  # noqa: F401 - one PostgreSQL server per session
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


@pytest.fixture(autouse=True)
def sigterm_as_found() -> Iterator[None]:
    """SIGTERM's handler as it was before each test. Dagster's in-process execution copies SIGINT's handler to SIGTERM
    and leaves it there: under a background job (SIGINT ignored) every later child of this process would start with
    SIGTERM ignored, and a test that stops its children with SIGTERM (a process pool's terminate) would wait forever."""
    before = signal.getsignal(signal.SIGTERM)
    yield
    if before is not None and signal.getsignal(signal.SIGTERM) != before:
        signal.signal(signal.SIGTERM, before)


@pytest.fixture(scope="session")
def digits_subset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real dataset: 40 digits per class from the bundled sample, as PNG files."""
    return export_digits(tmp_path_factory.mktemp("data") / "digits40", per_class_limit=40)


def write_png(path: Path, pixels: np.ndarray, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(path)
    return path


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid PNG whose header claims `width` x `height` pixels (a decompression bomb's calling card)."""
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((2, 2), dtype=np.uint8), mode="L").save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    # IHDR data starts after the 8-byte signature, 4-byte length and 4-byte type; its CRC follows 13 bytes later.
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
