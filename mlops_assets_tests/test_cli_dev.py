"""`mlops dev` stops on SIGTERM as it does on Ctrl-C: the UI and every process it started stop, and it exits.

It is started the way a background job of a non-interactive shell is (SIGINT ignored), where `dagster dev` on its
own ignored SIGTERM as well and kept running.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from mlops_assets_tests.conftest import free_port

pytestmark = pytest.mark.e2e
MLOPS = str(Path(sys.executable).parent / "mlops")
DEADLINE_S = 600


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


def _processes() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, state letter)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended while we looked
        found[int(entry.name)] = (int(fields[1]), fields[0])
    return found


def _descendants(pid: int) -> set[int]:
    processes = _processes()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (parent, _) in processes.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pids: set[int]) -> set[int]:
    processes = _processes()
    return {pid for pid in pids if pid in processes and processes[pid][1] != "Z"}


def _ui_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/server_info", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.xfail(
    strict=False,
    reason="known flake since `mlops dev` runs `dg dev`: in one whole-suite run on a loaded machine `mlops dev` did "
    "not exit within the guard after SIGTERM (it passes alone); under investigation",
)
def test_sigterm_stops_mlops_dev_and_every_process_it_started(tmp_path: Path) -> None:
    env = {**os.environ, "MLOPS_HOME": str(tmp_path / "home")}
    for key in ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME"):
        env.pop(key, None)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "dev.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [MLOPS, "dev", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_interrupts,
            start_new_session=True,
        )
    started: set[int] = set()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not _ui_answers(url):
            assert process.poll() is None, f"mlops dev ended ({process.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the UI never answered"
            time.sleep(0.5)
        started = _descendants(process.pid)
        assert len(started) >= 3, started  # dagster dev, its webserver and its daemon at least

        process.send_signal(signal.SIGTERM)
        # A hang guard, not a timing check: without the fix the process never exits.
        returncode = process.wait(timeout=120)  # the stop grace is 30 s (lib/foreground.py)

        assert returncode == 0, log.read_text()[-3000:]
        assert _running(started) == set(), {pid: _processes().get(pid) for pid in _running(started)}
        assert not _ui_answers(url)
    finally:
        for pid in (process.pid, *started):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=60)
