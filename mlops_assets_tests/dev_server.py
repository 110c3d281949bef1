"""`mlops dev` as a user starts it, on a home of its own and a free loopback port, and what a test sees of it from
outside: whether the UI answers, its GraphQL API, every process it started (read from /proc, not through the code
under test) and whether any of them outlived it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from mlops_assets_tests.conftest import free_port

MLOPS = str(Path(sys.executable).parent / "mlops")
DEADLINE_S = 600
# A hang guard for a stop, not a timing check: the grace `mlops dev` gives the UI is 30 s, then it kills what is left.
STOP_GUARD_S = 120
LOCATION_QUERY = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"


def dev_environment(home: Path) -> dict[str, str]:
    """This process's environment with MLOPS_HOME set to `home` and nothing that would point elsewhere."""
    env = {**os.environ, "MLOPS_HOME": str(home)}
    for key in ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME", "MLOPS_ENV"):
        env.pop(key, None)
    return env


@dataclass(frozen=True)
class ProcessId:
    """A process as /proc names it: its pid and its start time (a reused pid has another)."""

    pid: int
    started: int


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def live_processes() -> dict[ProcessId, tuple[int, int]]:
    """Every live (not zombie) process: its id -> (parent pid, session id)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) and fields[0] != "Z":
            found[ProcessId(int(entry.name), int(fields[19]))] = (int(fields[1]), int(fields[3]))
    return found


def tree_of(pid: int, processes: dict[ProcessId, tuple[int, int]]) -> set[ProcessId]:
    """The live descendants of `pid`, and every live process in the sessions they lead."""
    found: set[ProcessId] = set()
    frontier = {pid}
    while frontier:
        children = {process for process, (parent, _) in processes.items() if parent in frontier} - found
        found |= children
        frontier = {child.pid for child in children}
    sessions = {child.pid for child in found}
    return found | {process for process, (_, session) in processes.items() if session in sessions}


def signal_caught(pid: int, number: int) -> bool:
    """Whether process `pid` has a handler for signal `number` (the SigCgt mask of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (number - 1) & 1)
    return False


def _ignore_interrupts() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _default_signals() -> None:
    # As a shell starts a foreground program, whatever this test process ignores (pytest itself may run as a
    # background job, and Dagster's in-process runs then leave SIGTERM ignored in it).
    for number in (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM):
        signal.signal(number, signal.SIG_DFL)


@dataclass
class MlopsDev:
    """A running `mlops dev`; every process of its tree is recorded while it runs (`seen`)."""

    process: subprocess.Popen
    url: str
    log: Path
    seen: set[ProcessId] = field(default_factory=set)
    # The last command line read of each process seen (none when it was gone before it could be read).
    commands: dict[ProcessId, str] = field(default_factory=dict)
    _watching: threading.Thread | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tree(self) -> set[ProcessId]:
        """The processes of its tree alive now."""
        return tree_of(self.process.pid, live_processes())

    def leader(self) -> int | None:
        """The pid of `dg dev`, the child `mlops dev` starts (it leads the session of everything the UI starts); not
        a short-lived helper an import runs before it (Dagster's croniter runs `file` when imported)."""
        children = [process.pid for process, (parent, _) in live_processes().items() if parent == self.process.pid]
        return next((pid for pid in children if is_dg(_command_line(pid))), None)

    def dg_seen(self) -> list[str]:
        """The command lines of the `dg` processes seen in its tree."""
        return [command for command in self.commands.values() if is_dg(command)]

    def survivors(self) -> set[ProcessId]:
        """The processes ever seen in its tree, or in the session of any of them, that are still alive."""
        processes = live_processes()
        sessions = {process.pid for process in self.seen}
        return (self.seen & set(processes)) | {
            process for process, (_, session) in processes.items() if session in sessions
        }

    def wait_for(self, what: str, condition: Callable[[], object], timeout_s: float = DEADLINE_S, interval=0.5):
        """Poll `condition` until it returns something truthy (returned); fails if `mlops dev` ends first."""
        deadline = time.monotonic() + timeout_s
        while not (found := condition()):
            assert self.process.poll() is None, f"mlops dev ended ({self.process.returncode}):\n{self.output()[-3000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{self.output()[-3000:]}"
            time.sleep(interval)
        return found

    def stop(self, number: int = signal.SIGTERM) -> int:
        """Send `number` to `mlops dev` alone (as `kill` does) and wait for it to exit; returns its exit status.
        Fails, after killing its whole tree, if it has not exited within the guard."""
        self.process.send_signal(number)
        try:
            return self.process.wait(timeout=STOP_GUARD_S)
        except subprocess.TimeoutExpired:
            self.kill()
            name = signal.Signals(number).name
            raise AssertionError(
                f"mlops dev still running {STOP_GUARD_S} s after {name}:\n{self.output()[-3000:]}"
            ) from None

    def kill(self) -> None:
        """SIGKILL every process of its tree still alive, and `mlops dev` itself (clean-up after a failure)."""
        for process in self.survivors():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=60)

    def _watch(self) -> None:
        while self.process.poll() is None:
            tree = self.tree()
            for process in tree:
                # Read again at every poll: a child just forked shows its parent's command line until it execs.
                if command := _command_line(process.pid):
                    self.commands[process] = command
            self.seen |= tree
            time.sleep(0.05)


def is_dg(command: str) -> bool:
    """Whether a command line runs the `dg` program (as itself, or as the script its interpreter runs)."""
    return any(Path(word).name == "dg" for word in command.split()[:2])


def _command_line(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def start_mlops_dev(home: Path, ignore_interrupts: bool = False) -> MlopsDev:
    """`mlops dev` on `home` and a free loopback port, output to `home/dev.log`, in a session of its own; with
    `ignore_interrupts`, started as a background job of a non-interactive shell is (SIGINT and SIGQUIT ignored)."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    log = home / "dev.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [MLOPS, "dev", "--port", str(port)],
            env=dev_environment(home),
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=_ignore_interrupts if ignore_interrupts else _default_signals,
            start_new_session=True,
        )
    dev = MlopsDev(process, f"http://127.0.0.1:{port}", log)
    dev._watching = threading.Thread(target=dev._watch, daemon=True)
    dev._watching.start()
    return dev


def ui_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/server_info", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def graphql(url: str, query: str) -> dict:
    """The `data` of a GraphQL answer, {} when the UI does not answer (yet)."""
    try:
        response = httpx.post(f"{url}/graphql", json={"query": query}, timeout=30)
    except httpx.HTTPError:
        return {}
    return response.json().get("data") or {} if response.status_code == 200 else {}


def location_loaded(url: str) -> bool:
    """Whether the UI has loaded the code location `mlops_assets`."""
    entries = (graphql(url, LOCATION_QUERY).get("workspaceOrError") or {}).get("locationEntries") or []
    return any(entry["name"] == "mlops_assets" and entry["loadStatus"] == "LOADED" for entry in entries)
