"""`mlops dev` checks its port before it starts anything (range, a project server's port, a port in use), and stops
everything it started when the webserver cannot serve the UI (`cli_dev.UiWatch`, with a stand-in for `dg dev` whose
webserver process is named as Dagster's is: `... -m dagster_webserver`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mlops_assets.cli_dev import UiWatch
from mlops_assets.lib.foreground import StopSignals, describe, run_in_foreground
from mlops_assets_tests.conftest import free_port
from mlops_assets_tests.dev_server import MLOPS, dev_environment

PYTHON = Path(sys.executable).name
# A stand-in for `dg dev`: starts its "webserver" (argv[2]: the code it runs), writes the webserver's pid to argv[1],
# and keeps running (as `dg dev` did with no UI) until SIGINT.
FAKE_DG = """import os, subprocess, sys, time
webserver = subprocess.Popen([sys.executable, "-c", sys.argv[2], "-m", "dagster_webserver"])
with open(sys.argv[1] + ".tmp", "w") as pid:
    pid.write(str(webserver.pid))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
try:
    while True:
        time.sleep(1)
except KeyboardInterrupt:
    sys.exit(0)
"""


def _mlops_dev(home: Path, port: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [MLOPS, "dev", "--port", str(port)], env=dev_environment(home), capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket of this process listening on a free loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", free_port()))
        server.listen()
        yield server


@pytest.mark.parametrize("port", [0, 70000])
def test_a_port_outside_the_range_is_refused_before_anything_starts(tmp_path: Path, port: int) -> None:
    result = _mlops_dev(tmp_path / "home", port)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: command line: --port = {port}: expected an integer from 1 to 65535\n"
    assert not (tmp_path / "home").exists()


def test_a_port_in_use_is_refused_before_anything_starts_naming_what_holds_it(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    result = _mlops_dev(tmp_path / "home", port)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: command line: --port = {port}: port {port} on 127.0.0.1 is in use "
        f"(pid {describe(psutil.Process())}); stop it or choose another --port\n"
    )
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize(
    ("port", "setting"),
    [
        (3100, "deployments.staging.port (that stage's router)"),
        (3130, "deployments.production.port (that stage's router)"),
        (3030, "server.port (`mlops deploy local`)"),
    ],
)
def test_the_port_of_another_server_of_the_project_is_refused(tmp_path: Path, port: int, setting: str) -> None:
    result = _mlops_dev(tmp_path / "home", port)

    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: command line: --port = {port}: the port of {setting} in deployments/local.yaml; "
        "choose another --port\n"
    )
    assert not (tmp_path / "home").exists()


def _run_fake_dg(tmp_path: Path, webserver_code: str, port: int) -> tuple[int, list[str], int]:
    """The stand-in `dg dev` watched by UiWatch(port): its exit status, what was said, the webserver's pid."""
    script = tmp_path / "dg.py"
    script.write_text(FAKE_DG)
    pid_file = tmp_path / "webserver.pid"
    said: list[str] = []
    with StopSignals() as stop:
        status = run_in_foreground(
            [sys.executable, str(script), str(pid_file), webserver_code],
            os.environ,
            tmp_path,
            stop,
            60,
            said.append,
            failure=UiWatch(port),
        )
    return status, said, int(pid_file.read_text())


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_webserver_that_exits_stops_the_whole_tree_and_exits_1(tmp_path: Path) -> None:
    # It lives 2 s (the watch polls every 0.2 s), as a webserver that fails after loading does, and is not reaped.
    status, said, webserver = _run_fake_dg(tmp_path, "import time; time.sleep(2); raise SystemExit(1)", free_port())

    assert status == 1
    assert said == [
        f"the Dagster UI could not start: its webserver (pid {webserver}) exited",
        f"stopping {PYTHON} (SIGINT to its processes, killed after 60 s)",
    ]
    assert _gone(webserver)


def test_a_webserver_whose_port_another_program_took_stops_the_whole_tree_naming_it(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    # Alive and not listening, as Dagster's webserver stays when uvicorn cannot bind.
    status, said, webserver = _run_fake_dg(tmp_path, "import time; time.sleep(600)", port)

    assert status == 1
    assert said == [
        f"the Dagster UI could not start: port {port} on 127.0.0.1 is taken by another program "
        f"(pid {describe(psutil.Process())}), so the webserver cannot bind it; choose another --port",
        f"stopping {PYTHON} (SIGINT to its processes, killed after 60 s)",
    ]
    assert _gone(webserver)
