"""`mlops dev` stops on SIGTERM as it does on Ctrl-C, at any moment of its start: the UI and every process it started
stop, and it exits 0.

It is started the way a background job of a non-interactive shell is (SIGINT ignored), where `dagster dev` on its
own ignored SIGTERM as well and kept running. The moments: while it prepares the instance (before `dg dev` exists),
as soon as `dg dev` exists (Python still starting), while the code server loads the definitions (the UI not up yet),
and once the UI answers; then Ctrl-C (SIGINT) once the UI answers, started as a foreground program is.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from filelock import FileLock

from mlops_assets_tests.dev_server import MlopsDev, live_processes, signal_caught, start_mlops_dev, ui_answers

pytestmark = pytest.mark.e2e
STOPPING = "mlops dev: SIGTERM received: stopping dg (SIGINT to its processes, killed after 30 s)"


def _children(pid: int) -> list[int]:
    return [process.pid for process, (parent, _) in live_processes().items() if parent == pid]


def _assert_all_stopped(dev: MlopsDev, status: int) -> None:
    assert status == 0, dev.output()[-3000:]
    assert dev.survivors() == set(), {process: live_processes().get(process) for process in dev.survivors()}
    assert not ui_answers(dev.url)
    assert "still running" not in dev.output(), dev.output()[-3000:]  # stopped within the grace, not killed


def test_sigterm_while_the_instance_is_prepared_means_dg_dev_is_never_started(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # Holding the home's instance lock keeps `mlops dev` before the start of `dg dev` until the signal is sent.
    (home / "locks").mkdir(parents=True)
    with FileLock(home / "locks" / "dagster-instance.lock"):
        dev = start_mlops_dev(home, ignore_interrupts=True)
        try:
            dev.wait_for(
                "mlops dev to catch SIGTERM", lambda: signal_caught(dev.process.pid, signal.SIGTERM), 120, 0.01
            )
            dev.process.send_signal(signal.SIGTERM)
        except BaseException:
            dev.kill()
            raise
    status = dev.process.wait(timeout=120)

    assert dev.output().splitlines()[-1] == "mlops dev: SIGTERM received before dg was started; not starting it"
    # No `dg` was started. Short-lived helpers of the imports may have been (Dagster's vendored croniter runs
    # `file -b <python>` through platform.architecture() when imported).
    assert dev.dg_seen() == [], dev.commands
    _assert_all_stopped(dev, status)


@pytest.mark.parametrize("moment", ["dg dev starting", "code server loading", "UI up"])
def test_sigterm_stops_mlops_dev_and_every_process_it_started(tmp_path: Path, moment: str) -> None:
    dev = start_mlops_dev(tmp_path / "home", ignore_interrupts=True)
    try:
        leader = dev.wait_for("dg dev to start", dev.leader, interval=0.01)
        if moment == "code server loading":
            dev.wait_for("the code server to start", lambda: _children(leader), interval=0.05)
            assert not ui_answers(dev.url)
        if moment == "UI up":
            dev.wait_for("the UI to answer", lambda: ui_answers(dev.url))
            # dg dev, its code server, webserver and daemon at least
            assert len(dev.tree()) >= 4, dev.tree()
        status = dev.stop(signal.SIGTERM)
    finally:
        dev.kill()

    assert dev.dg_seen(), dev.commands  # what the test before this one checks the absence of
    assert STOPPING in dev.output().splitlines(), dev.output()[-3000:]
    _assert_all_stopped(dev, status)


def test_ctrl_c_stops_mlops_dev_and_every_process_it_started(tmp_path: Path) -> None:
    dev = start_mlops_dev(tmp_path / "home")
    try:
        dev.wait_for("the UI to answer", lambda: ui_answers(dev.url))
        status = dev.stop(signal.SIGINT)
    finally:
        dev.kill()

    assert STOPPING.replace("SIGTERM", "SIGINT") in dev.output().splitlines(), dev.output()[-3000:]
    _assert_all_stopped(dev, status)
