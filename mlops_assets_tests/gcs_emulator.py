"""A real GCS JSON-API emulator for the tests (`gcp-storage-emulator`), on a free loopback port, stopped afterwards.

The session fixture `gcs_emulator` starts one emulator in memory, in its own process group, waits until it answers,
points the Google clients at it (`STORAGE_EMULATOR_HOST`) for the session and stops the group at the end. Tests
create their own buckets with `new_bucket()`. The emulator has no IAM, signed URLs or quotas (README, "Environments").
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

# Seconds the emulator may take to answer its first request (a few on two busy cores).
READY_TIMEOUT_S = 60
EMULATOR_VARIABLE = "STORAGE_EMULATOR_HOST"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class GcsEmulator:
    """One `gcp-storage-emulator start --in-memory` process group on 127.0.0.1; `start()` then `stop()`."""

    def __init__(self) -> None:
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._log = tempfile.NamedTemporaryFile(prefix="gcs-emulator-", suffix=".log", delete=False)  # noqa: SIM115
        self._buckets = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GcsEmulator:
        """Start on a free port and wait until the bucket list answers; raises RuntimeError with the emulator's log."""
        program = Path(sys.executable).parent / "gcp-storage-emulator"
        self.port = free_port()
        command = [str(program), "start", "--host", "127.0.0.1", "--port", str(self.port), "--in-memory", "--quiet"]
        # Its own session: the emulator and anything it starts are stopped together, whatever started the tests.
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gcp-storage-emulator exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/storage/v1/b", params={"project": "test"}, timeout=2).status_code == 200:
                    return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gcp-storage-emulator did not answer within {READY_TIMEOUT_S} s: {self.log_tail()}")

    def log_tail(self, characters: int = 2000) -> str:
        return Path(self._log.name).read_text(errors="replace")[-characters:]

    def client(self):
        """A google-cloud-storage client of the emulator (anonymous, as the library does when the variable is set)."""
        from google.cloud import storage

        return storage.Client(project="test")

    def new_bucket(self, prefix: str = "bucket") -> str:
        """Create a new, empty bucket and return its name."""
        name = f"{prefix}-{next(self._buckets)}"
        self.client().create_bucket(name)
        return name

    def upload_folder(self, folder: Path, bucket: str, prefix: str) -> str:
        """Upload every file below `folder` to gs://bucket/prefix/<relative path>, and a placeholder object
        (`<name>/`, as cloud consoles make them) for every empty folder; returns the gs:// URL."""
        target = self.client().bucket(bucket)
        for path in sorted(folder.rglob("*")):
            name = f"{prefix}/{path.relative_to(folder).as_posix()}"
            if path.is_file():
                target.blob(name).upload_from_filename(str(path))
            elif path.is_dir() and not any(path.iterdir()):
                target.blob(f"{name}/").upload_from_string(b"")
        return f"gs://{bucket}/{prefix}"

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """The objects of `bucket` below `prefix`: name -> size in bytes."""
        return {blob.name: blob.size for blob in self.client().list_blobs(bucket, prefix=prefix)}

    def stop(self) -> None:
        """SIGTERM the emulator's process group, SIGKILL it if it lingers; remove the log."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GcsEmulator]:
    """One emulator for the session, with STORAGE_EMULATOR_HOST pointing at it while the session lasts."""
    emulator = GcsEmulator().start()
    previous = os.environ.get(EMULATOR_VARIABLE)
    os.environ[EMULATOR_VARIABLE] = emulator.url
    try:
        yield emulator
    finally:
        if previous is None:
            os.environ.pop(EMULATOR_VARIABLE, None)
        else:
            os.environ[EMULATOR_VARIABLE] = previous
        emulator.stop()
