"""The supervisor's ready-wait refuses a server whose service says it cannot start, at once and in its own words.

The servers here are small Python programs that refuse as the service does (`startup_refused`), then either live on
(as BentoML's leader does while it restarts the failing worker) or exit; the alert-label test refuses a real bento.
"""

import dataclasses
import os
import signal
import sys
from pathlib import Path

import pytest

from mlops_assets import settings
from mlops_assets.lib.deploy.release import DeploymentError
from mlops_assets.lib.deploy.startup_refusal import REFUSAL_FILE_NAME, REFUSAL_FILE_VARIABLE
from mlops_assets.lib.deploy.supervisor import (
    ServerProcess,
    free_port,
    group_alive,
    leader_alive,
    spawn,
    start_server,
    stop_server,
    wait_ready,
)

TAG = "image-classifier-service:refusal-test"
REFUSAL = "The service cannot start: monitoring.capture.alert_labels names 'drone'; correct it."
# Refuses as bento/service.py does, then stays alive (`live`) or exits with status 3.
SERVER = """
import sys, time
from mlops_assets.lib.deploy.startup_refusal import startup_refused
try:
    raise startup_refused(sys.argv[1])
except Exception:
    if sys.argv[2] == "exit":
        sys.exit(3)
time.sleep(600)
"""
# Longer than any start takes here: a ready-wait that missed the refusal would end with the timeout's message.
READY_TIMEOUT_S = 300


def _refusing_server(tmp_path: Path, then: str) -> ServerProcess:
    refusal = tmp_path / "home" / REFUSAL_FILE_NAME
    env = {**os.environ, REFUSAL_FILE_VARIABLE: str(refusal)}
    command = [sys.executable, "-c", SERVER, REFUSAL, then]
    server, _ = spawn(command, "127.0.0.1", free_port(), tmp_path / "server.log", env, TAG)
    return dataclasses.replace(server, refusal_path=str(refusal))


@pytest.mark.parametrize("then", ["live", "exit"])
def test_a_refusing_server_is_refused_with_its_own_message(tmp_path: Path, then: str) -> None:
    server = _refusing_server(tmp_path, then)
    try:
        with pytest.raises(DeploymentError) as refused:
            wait_ready(server, READY_TIMEOUT_S)
        assert str(refused.value) == f"{REFUSAL} The server for {TAG} refused to start; its log: {server.log_path}"
        # Alive: refused while the server still ran (BentoML's leader outlives its failing worker); exited: the
        # refusal, not the bare exit status.
        assert leader_alive(server) is (then == "live")
    finally:
        stop_server(server)
    assert group_alive(server) is False


def test_an_earlier_servers_refusal_does_not_refuse_the_next_one_on_its_port(tmp_path: Path) -> None:
    port = free_port()
    stale = tmp_path / f".bentoml-{port}" / REFUSAL_FILE_NAME
    stale.parent.mkdir()
    stale.write_text(REFUSAL)
    log = tmp_path / "server.log"
    env = {**os.environ, **settings.export_environment()}
    server = start_server("image-classifier-service:no-such-bento", "127.0.0.1", port, log, env)
    try:
        assert server.refusal_path == str(stale)
        assert stale.exists() is False
        with pytest.raises(DeploymentError) as refused:
            wait_ready(server, READY_TIMEOUT_S)
    finally:
        stop_server(server)
    message = str(refused.value)
    assert message.startswith(
        f"The server for image-classifier-service:no-such-bento exited (status 1) before it was ready. "
        f"Last log lines ({log}):\n"
    )
    assert "'image-classifier-service:no-such-bento' is not found in BentoML store" in message


def _ignored_signals(pid: int) -> int:
    """The SigIgn mask of process `pid` (bit n-1 set: signal n ignored)."""
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("SigIgn:"))
    return int(line.split()[1], 16)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_server_started_where_sigterm_is_ignored_still_stops_on_sigterm(tmp_path: Path) -> None:
    # As in a process where Dagster's in-process execution copied an ignored SIGINT's handler to SIGTERM.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        server, process = spawn(
            [sys.executable, "-c", "import time; time.sleep(600)"],
            "127.0.0.1",
            free_port(),
            tmp_path / "server.log",
            os.environ,
            TAG,
        )
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # this process's own choice is kept
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        assert _ignored_signals(process.pid) >> (signal.SIGTERM - 1) & 1 == 0
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == -signal.SIGTERM
    finally:
        stop_server(server)
