"""Real `mlops` processes on one home, and what a test sees of them from outside: the Dagster instance's event log,
the registry file (read-only, never locking it) and the folders they write."""

from __future__ import annotations

import fcntl
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from filelock import FileLock
from PIL import Image

from mlops_assets.housekeeping import PID_TAG
from mlops_assets.lib.registry.registry import AuditView, ModelRegistry
from mlops_assets_tests.image_inputs import noise

MLOPS = str(Path(sys.executable).parent / "mlops")
# Softmax regression on the brightness datasets below: every model classifies its test split perfectly, so every
# gate passes whichever model it is compared with, and 50 epochs take milliseconds.
FAST_CONFIG = "ops: {trained_model: {config: {plugin: softmax, epochs: 50}}}\n"
DEADLINE_S = 600


def brightness_dataset(root: Path, seed: int, per_class: int = 12) -> Path:
    """Three labels of 8x8 greyscale noise that differ by brightness; each seed gives other files (another model)."""
    for index, (label, base) in enumerate((("dark", 40), ("grey", 128), ("light", 215))):
        (root / label).mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            pixels = noise(seed * 1000 + index * 100 + number, (8, 8), base, 25)
            Image.fromarray(pixels).save(root / label / f"{number:02d}.png")
    return root


def not_images(root: Path) -> Path:
    """Two label folders of `.png` files that are not images: validated_images fails with a DatasetError."""
    for label in ("cat", "dog"):
        for index in range(2):
            path = root / label / f"{index}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"not an image {label} {index}")
    return root


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


_started: list[MlopsProcess] = []


def kill_unfinished() -> None:
    """Kill every process started here that is still running (a test that failed while one was paused)."""
    while _started:
        process = _started.pop()
        if process.running():
            process.kill()


class MlopsProcess:
    """`mlops <args>` on `home`, started now; its output goes to `logs/<name>.out|.err` (a paused process never
    blocks on a full pipe)."""

    def __init__(self, home: Path, logs: Path, name: str, *args: str) -> None:
        env = {**os.environ, "MLOPS_HOME": str(home)}
        for key in ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME"):
            env.pop(key, None)
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path, self.stderr_path = logs / f"{name}.out", logs / f"{name}.err"
        with self.stdout_path.open("w") as stdout, self.stderr_path.open("w") as stderr:
            self.popen = subprocess.Popen([MLOPS, *args], env=env, stdout=stdout, stderr=stderr)
        self.pid = self.popen.pid
        _started.append(self)

    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def pause(self) -> None:
        """SIGSTOP, and wait until it is stopped (a process blocked on a lock leaves the wait only then)."""
        self.popen.send_signal(signal.SIGSTOP)
        wait_for("it to stop", lambda: _state(self.pid) == "T")

    def kill(self) -> None:
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=60)

    def finish(self, timeout: float = DEADLINE_S) -> Finished:
        self.popen.wait(timeout=timeout)
        return Finished(self.popen.returncode, self.stdout_path.read_text(), self.stderr_path.read_text())


def _state(pid: int) -> str:
    """The process's state letter from /proc (R running, S sleeping, T stopped, ...)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("State:"):
            return line.split()[1]
    return ""


def start_run(home: Path, logs: Path, name: str, dataset: Path, config: Path) -> MlopsProcess:
    return MlopsProcess(home, logs, name, "run", "--dataset", str(dataset), "--config", str(config))


def wait_for(what: str, condition: Callable[[], object], process: MlopsProcess | None = None, interval: float = 0.05):
    """Poll `condition` until it returns something truthy (returned); fails if `process` ends first or time runs out."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        found = condition()
        if found:
            return found
        if process is not None and not process.running():
            finished = process.finish()
            raise AssertionError(f"mlops ended ({finished.returncode}) before {what}:\n{finished.stderr[-3000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def instance(home: Path) -> dg.DagsterInstance:
    """The home's instance, opened under the lock `mlops` creates it under (see settings.open_instance)."""
    (home / "locks").mkdir(parents=True, exist_ok=True)
    with FileLock(home / "locks" / "dagster-instance.lock"):
        return dg.DagsterInstance.from_config(str(home / "dagster"))


def run_of(home: Path, process: MlopsProcess) -> dg.DagsterRun | None:
    """The run `process` created (its pid is in the run's tags), once it exists."""
    if not (home / "dagster" / "dagster.yaml").exists():
        return None
    with instance(home) as dagster:
        records = dagster.get_run_records(dg.RunsFilter(tags={PID_TAG: str(process.pid)}))
    return records[0].dagster_run if records else None


def steps(home: Path, run_id: str, of_type: dg.DagsterEventType) -> list[str]:
    """The step keys of the run's events of one type (STEP_START, STEP_SUCCESS, ...), in order."""
    with instance(home) as dagster:
        return [event.step_key for event in dagster.all_logs(run_id, of_type=of_type)]


def step_started(home: Path, run_id: str, step_key: str) -> bool:
    return step_key in steps(home, run_id, dg.DagsterEventType.STEP_START)


def wait_for_step(home: Path, process: MlopsProcess, step_key: str) -> str:
    """Wait until `process`'s run started step `step_key`; returns the run id."""
    run = wait_for("its run to be created", lambda: run_of(home, process), process, interval=0.2)
    wait_for(f"step {step_key} to start", lambda: step_started(home, run.run_id, step_key), process, interval=0.1)
    return run.run_id


def runs(home: Path) -> dict[str, tuple[str, list[str]]]:
    """Every run: its status and the messages of its failure events."""
    with instance(home) as dagster:
        return {
            record.dagster_run.run_id: (
                record.dagster_run.status.value,
                [
                    entry.dagster_event.message
                    for entry in dagster.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
                ],
            )
            for record in dagster.get_run_records()
        }


def gate_verdicts(home: Path) -> list[tuple[str, bool]]:
    """(Dagster run id, passed) of every gate verdict, read without taking any lock (WAL readers never block)."""
    database = home / "registry.db"
    if not database.exists():
        return []
    # Closed at once: an sqlite3 connection left to the garbage collector stays open (and holds its locks) for as long
    # as the collector takes, and this is called in a loop.
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
        try:
            rows = connection.execute("SELECT dagster_run_id, passed FROM gate_decisions ORDER BY id").fetchall()
        except sqlite3.OperationalError:
            return []  # the table is not created yet
    return [(run_id, bool(passed)) for run_id, passed in rows]


def registry(home: Path) -> ModelRegistry:
    return ModelRegistry(f"sqlite:///{home / 'registry.db'}", "local")


def replay(history: list[AuditView]) -> dict[int, str]:
    """Each version's status after replaying the audit log; asserts every entry starts where the previous left it
    and that no moment has two production (or staging) versions."""
    status: dict[int, str] = {}
    for entry in history:
        assert status.get(entry.version) == entry.from_status, entry
        status[entry.version] = entry.to_status
        assert list(status.values()).count("production") <= 1, entry
        assert list(status.values()).count("staging") <= 1, entry
    return status


def leftovers(home: Path) -> list[Path]:
    """Partial artifacts, BentoML temporary folders and a store-write journal anywhere in the home."""
    found = list(home.glob("**/.partial-*"))
    temporary = home / "bentoml" / "tmp"
    if temporary.is_dir():
        found += [path for path in temporary.iterdir() if path.name.startswith(("bentoml", "bentofile"))]
    return found + list((home / "locks").glob("*.json"))


def waits_for_lock(lock_file: Path, pid: int) -> bool:
    """Whether process `pid` is blocked waiting for an flock on `lock_file` (Linux: a `->` line of /proc/locks)."""
    inode = lock_file.stat().st_ino
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 6 and fields[1] == "->" and fields[5] == str(pid) and fields[6].endswith(f":{inode}"):
            return True
    return False


def pause_promotion(home: Path, process: MlopsProcess, run_id: str, then: Callable[[], None]) -> None:
    """Once the run's gate passed, hold the registry file's lock (which every opening of the registry takes first),
    wait until its promotion step blocks on it, holding nothing else, and call `then` (pause or kill it) before the
    lock is released: a process that is still waiting when it is released would take it."""
    wait_for("its gate verdict", lambda: (run_id, True) in gate_verdicts(home), process, interval=0.01)
    lock_file = home / "registry.db.lock"
    with lock_file.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        wait_for("its promotion to start", lambda: step_started(home, run_id, "model_promotion"), process, 0.1)
        wait_for("its promotion to wait for the registry", lambda: waits_for_lock(lock_file, process.pid), process)
        then()
