"""lib/foreground.py with real processes: a stop signal stops the command and every process of its session, within
the grace period or by SIGKILL after it (and says so), and a signal that comes before the start means no start."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from mlops_assets.lib.foreground import StopSignals, describe, run_in_foreground, session_processes

PYTHON = Path(sys.executable).name
# The leader starts a helper in a process group of its own (so the SIGINT sent to the leader's group misses it),
# writes both pids, then waits. IGNORE=1: both ignore SIGINT; else the leader exits 0 on it.
CHILD = """import os, signal, subprocess, sys, time
if sys.argv[1] == "helper":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        time.sleep(1)
if os.environ["IGNORE"] == "1":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
helper = subprocess.Popen([sys.executable, sys.argv[0], "helper"], process_group=0)
with open(sys.argv[1] + ".tmp", "w") as pids:
    pids.write(f"{os.getpid()} {helper.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
try:
    while True:
        time.sleep(1)
except KeyboardInterrupt:
    sys.exit(0)
"""


@pytest.fixture(autouse=True)
def default_stop_signals() -> Iterator[None]:
    """The stop signals at their default action, as in a program started from a terminal, whatever this test process
    inherited (run under `nohup` or as a background job, it ignores SIGHUP or SIGINT, which StopSignals respects)."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGHUP: signal.SIG_DFL}
    previous = {number: signal.signal(number, handler) for number, handler in defaults.items()}
    yield
    for number, handler in previous.items():
        signal.signal(number, handler)


@pytest.fixture
def child(tmp_path: Path) -> Path:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return script


@pytest.fixture
def ignored_sigint() -> Iterator[None]:
    """SIGINT ignored in this process, as in a background job of a non-interactive shell."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    yield
    signal.signal(signal.SIGINT, previous)


def _signal_when(path: Path, number: int) -> threading.Thread:
    """Send `number` to this process once `path` exists (the handler runs in the main thread)."""

    def send() -> None:
        while not path.exists():
            time.sleep(0.02)
        os.kill(os.getpid(), number)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _described(pid: int, script: Path, argument: Path | str) -> str:
    """As the lines about killed processes name them: the program's file name, then every argument (none here is
    longer than 80 characters)."""
    assert len(str(script)) <= 80, script
    return f"{pid} {PYTHON} {script} {argument}"


def test_a_command_still_running_after_the_grace_is_killed_with_its_whole_session_and_said_so(
    child: Path, tmp_path: Path
) -> None:
    pids_file = tmp_path / "pids"
    said: list[str] = []
    with StopSignals() as stop:
        sender = _signal_when(pids_file, signal.SIGTERM)
        status = run_in_foreground(
            [sys.executable, str(child), str(pids_file)], {**os.environ, "IGNORE": "1"}, tmp_path, stop, 1, said.append
        )
    sender.join()
    leader, helper = (int(pid) for pid in pids_file.read_text().split())

    assert status == 128 + signal.SIGKILL
    assert said == [
        f"SIGTERM received: stopping {PYTHON} (SIGINT to its processes, killed after 1 s)",
        f"{PYTHON} still running 1 s after SIGINT: killing the 2 process(es) left in its session (SIGKILL): "
        f"{_described(leader, child, pids_file)}, {_described(helper, child, 'helper')}",
    ]
    assert (_alive(leader), _alive(helper)) == (False, False)
    assert session_processes(leader) == []


def test_what_a_clean_shutdown_leaves_in_the_session_is_killed_and_said_so(child: Path, tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    said: list[str] = []
    with StopSignals() as stop:
        sender = _signal_when(pids_file, signal.SIGHUP)
        status = run_in_foreground(
            [sys.executable, str(child), str(pids_file)], {**os.environ, "IGNORE": "0"}, tmp_path, stop, 60, said.append
        )
    sender.join()
    leader, helper = (int(pid) for pid in pids_file.read_text().split())

    assert status == 0
    assert said == [
        f"SIGHUP received: stopping {PYTHON} (SIGINT to its processes, killed after 60 s)",
        f"{PYTHON} ended and left 1 process(es) running: killed them (SIGKILL): {_described(helper, child, 'helper')}",
    ]
    assert (_alive(leader), _alive(helper)) == (False, False)


# The leader starts a worker in its own process group (the SIGINT reaches both) and exits at once on it. The worker
# says it is ready (argv[1] + ".ready", inside its KeyboardInterrupt handler's reach) before the leader writes the
# pids; on SIGINT it takes argv[3] seconds to shut down (as a server finishing its requests does), then writes
# argv[1] + ".done"; argv[3] "never": it ignores SIGINT.
SLOW_CHILD = """import os, signal, subprocess, sys, time
if sys.argv[2] == "worker":
    if sys.argv[3] == "never":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        open(sys.argv[1] + ".ready", "w").close()
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        time.sleep(float(sys.argv[3]))
        open(sys.argv[1] + ".done", "w").close()
        sys.exit(0)
worker = subprocess.Popen([sys.executable, sys.argv[0], sys.argv[1], "worker", sys.argv[3]])
while not os.path.exists(sys.argv[1] + ".ready"):
    time.sleep(0.01)
with open(sys.argv[1] + ".tmp", "w") as pids:
    pids.write(f"{os.getpid()} {worker.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
try:
    while True:
        time.sleep(1)
except KeyboardInterrupt:
    sys.exit(0)
"""


def _stop_slow_child(tmp_path: Path, shutdown: str, grace_s: float) -> tuple[int, list[str], int, int]:
    """SIGTERM to this process once SLOW_CHILD's pair is up: the status, what was said, the leader's and worker's
    pids."""
    script = tmp_path / "slow_child.py"
    script.write_text(SLOW_CHILD)
    pids_file = tmp_path / "pids"
    said: list[str] = []
    with StopSignals() as stop:
        sender = _signal_when(pids_file, signal.SIGTERM)
        status = run_in_foreground(
            [sys.executable, str(script), str(pids_file), "leader", shutdown],
            os.environ,
            tmp_path,
            stop,
            grace_s,
            said.append,
        )
    sender.join()
    leader, worker = (int(pid) for pid in pids_file.read_text().split())
    return status, said, leader, worker


def test_a_process_of_the_group_still_shutting_down_when_the_leader_ends_is_given_the_grace(tmp_path: Path) -> None:
    status, said, leader, worker = _stop_slow_child(tmp_path, "1", 60)

    assert status == 0
    assert said == [f"SIGTERM received: stopping {PYTHON} (SIGINT to its processes, killed after 60 s)"]
    assert (tmp_path / "pids.done").exists(), "the worker was killed before it finished its shutdown"
    assert (_alive(leader), _alive(worker)) == (False, False)


def test_a_process_of_the_group_still_running_at_the_end_of_the_grace_is_killed_and_said_so(tmp_path: Path) -> None:
    status, said, leader, worker = _stop_slow_child(tmp_path, "never", 1)
    script = tmp_path / "slow_child.py"

    assert status == 0  # the command itself ended on the SIGINT, within the grace
    assert said == [
        f"SIGTERM received: stopping {PYTHON} (SIGINT to its processes, killed after 1 s)",
        f"{PYTHON} ended, but 1 of its processes were still running 1 s after SIGINT: killing the 1 process(es) left "
        f"in its session (SIGKILL): {worker} {PYTHON} {script} {tmp_path / 'pids'} worker never",
    ]
    assert not (tmp_path / "pids.done").exists()
    assert (_alive(leader), _alive(worker)) == (False, False)


def test_a_signal_before_the_start_means_the_command_is_never_started(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    said: list[str] = []
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        while not stop.received:  # the handler runs in this thread, between two bytecodes
            time.sleep(0.01)
        status = run_in_foreground(
            [sys.executable, "-c", f"open({str(marker)!r}, 'w')"], os.environ, tmp_path, stop, 60, said.append
        )

    assert status == 0
    assert said == [f"SIGTERM received before {PYTHON} was started; not starting it"]
    assert not marker.exists()


def test_an_ignored_sigint_stays_ignored_but_the_command_stops_on_the_one_relayed_to_it(
    child: Path, tmp_path: Path, ignored_sigint: None
) -> None:
    pids_file = tmp_path / "pids"
    said: list[str] = []
    with StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        assert stop.received == []
        sender = _signal_when(pids_file, signal.SIGTERM)
        status = run_in_foreground(
            [sys.executable, str(child), str(pids_file)], {**os.environ, "IGNORE": "0"}, tmp_path, stop, 60, said.append
        )
    sender.join()
    helper = int(pids_file.read_text().split()[1])

    assert status == 0  # the leader exited on its KeyboardInterrupt: it got SIGINT with its default action
    assert said == [
        f"SIGTERM received: stopping {PYTHON} (SIGINT to its processes, killed after 60 s)",
        f"{PYTHON} ended and left 1 process(es) running: killed them (SIGKILL): {_described(helper, child, 'helper')}",
    ]
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_command_that_ends_by_itself_gives_its_exit_status(tmp_path: Path) -> None:
    said: list[str] = []
    with StopSignals() as stop:
        status = run_in_foreground(
            [sys.executable, "-c", "raise SystemExit(3)"], os.environ, tmp_path, stop, 60, said.append
        )

    assert (status, said) == (3, [])


def test_a_process_is_described_by_its_whole_command_line_with_long_arguments_shortened(tmp_path: Path) -> None:
    code = "import time; time.sleep(60)"
    long_argument = "--instance-ref=" + "x" * 200
    process = psutil.Popen([sys.executable, "-c", code, "run-worker", long_argument])
    try:
        # Between fork and exec the child has no command line of its own yet (psutil reads it empty and describe
        # falls back to the name): wait until the kernel shows the new program's arguments.
        deadline = time.monotonic() + 30
        while long_argument not in process.cmdline():
            assert time.monotonic() < deadline, f"the child never showed its arguments: {process.cmdline()}"
            time.sleep(0.01)
        described = describe(process)
    finally:
        process.kill()
        process.wait()

    assert described == f"{process.pid} {PYTHON} -c {code} run-worker --instance-ref={'x' * 62}..."
    assert describe(process) == f"{process.pid} (ended)"


def test_a_sigterm_ignored_by_accident_is_still_a_stop_request(child: Path, tmp_path: Path) -> None:
    # Dagster's in-process execution copies SIGINT's handler to SIGTERM; in a process started as a background job
    # (SIGINT ignored) SIGTERM then ends up ignored too, and `mlops dev` started from there never stopped on SIGTERM.
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pids_file = tmp_path / "pids"
    said: list[str] = []
    try:
        with StopSignals() as stop:
            sender = _signal_when(pids_file, signal.SIGTERM)
            status = run_in_foreground(
                [sys.executable, str(child), str(pids_file)],
                {**os.environ, "IGNORE": "0"},
                tmp_path,
                stop,
                60,
                said.append,
            )
        sender.join()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_IGN  # the caller's handler is put back
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert status == 0
    assert said[0] == f"SIGTERM received: stopping {PYTHON} (SIGINT to its processes, killed after 60 s)"
