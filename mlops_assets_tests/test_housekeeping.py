"""Start-up housekeeping with real processes that died: their runs are failed, their leftovers removed, a live
process's work left alone."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest
from dagster._core.events import EngineEventData
from dagster._core.test_utils import create_run_for_test

from mlops_assets import housekeeping, packaging
from mlops_assets.lib.atomic import atomic_directory, atomic_write_text


def _killed_process() -> tuple[int, float]:
    """(pid, start time) of a real process that was started and is gone (SIGKILL), as a killed run's process."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = psutil.Process(child.pid).create_time()
    child.kill()
    child.wait(timeout=30)
    return child.pid, started


def _run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    return home


def test_partials_of_killed_writers_are_removed_and_a_live_writers_kept(home: Path) -> None:
    # A real writer killed while it filled its partial directory (named with its pid).
    killed = _run_python(
        """
        import os, signal
        from pathlib import Path
        from mlops_assets.lib.atomic import atomic_directory
        with atomic_directory(Path(os.environ["MLOPS_HOME"]) / "artifacts" / "trained_model" / "v1") as staging:
            (staging / "weights.bin").write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
        """,
        {**os.environ, "MLOPS_HOME": str(home)},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (killed_directory,) = (home / "artifacts" / "trained_model").glob(".partial-*")
    assert (killed_directory / "weights.bin").read_bytes() == b"half"
    # A partial file named by a process that is gone, and one written before owners were recorded.
    dead_pid, _ = _killed_process()
    dead_file = home / "artifacts" / "model_evaluation" / "v1" / f".partial-{dead_pid}-x1y2z3.json"
    dead_file.parent.mkdir(parents=True)
    dead_file.write_text("{")
    legacy = home / "datasets" / ".partial-k3j2h1"
    legacy.mkdir(parents=True)

    with atomic_directory(home / "artifacts" / "validated_images" / "v2") as live:
        (live / "images.npy").write_bytes(b"in progress")
        removed = housekeeping.remove_partial_artifacts(home)
        assert live.is_dir()
    assert sorted(removed) == sorted([killed_directory, dead_file, legacy])
    assert not any(path.exists() for path in removed)
    assert (home / "artifacts" / "validated_images" / "v2" / "images.npy").read_bytes() == b"in progress"
    assert list(home.glob("**/.partial-*")) == []


def test_a_destination_finished_by_another_writer_meanwhile_is_kept(tmp_path: Path) -> None:
    destination = tmp_path / "artifacts" / "trained_model" / "v1"
    with atomic_directory(destination) as late:
        (late / "package.json").write_text("late")
        with atomic_directory(destination) as early:
            (early / "package.json").write_text("early")
        assert (destination / "package.json").read_text() == "early"
    # The destination readers already use is kept whole; the late copy is dropped.
    assert (destination / "package.json").read_text() == "early"
    assert sorted(path.name for path in destination.parent.iterdir()) == ["v1"]
    # A destination that existed before the write began is one the caller chose to rebuild: replaced.
    with atomic_directory(destination) as rebuilt:
        (rebuilt / "package.json").write_text("rebuilt")
    assert (destination / "package.json").read_text() == "rebuilt"
    atomic_write_text(destination / "note.txt", "whole")
    assert sorted(path.name for path in destination.iterdir()) == ["note.txt", "package.json"]


def test_a_model_store_write_killed_midway_is_undone_when_the_store_is_next_taken(home: Path) -> None:
    package = home.parent / "package"
    package.mkdir()
    (package / "package.json").write_text("{}")
    # A file whose reading blocks (a terminal nobody types into), so the writer is killed in the middle of the copy.
    terminal, device = os.openpty()
    (package / "weights.bin").symlink_to(os.ttyname(device))
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from mlops_assets.packaging import store_model; "
            "store_model(Path(sys.argv[1]), 'image-classifier', 'abc123', {}, {})",
            str(package),
        ],
        env={**os.environ, "MLOPS_HOME": str(home)},
    )
    journal = home / "locks" / packaging.PENDING_WRITE
    temporary = home / "bentoml" / "tmp"
    deadline = time.monotonic() + 120
    while not (journal.exists() and any(temporary.glob("bentoml-model-image-classifier-*"))):
        assert writer.poll() is None and time.monotonic() < deadline, "the writer never started copying"
        time.sleep(0.05)
    # Still holding the store: a start now leaves its work alone.
    assert packaging.tidy_store() == []
    writer.send_signal(signal.SIGKILL)
    assert writer.wait(timeout=30) == -signal.SIGKILL  # killed while blocked in the copy, not failed
    leftover = next(temporary.glob("bentoml-model-image-classifier-*"))
    # What BentoML's store would hold had the kill come while it filled the item in place.
    item = home / "bentoml" / "models" / "image-classifier" / "abc123"
    item.mkdir(parents=True)
    (item / "model.yaml").write_text("name: image-classifier\n")
    (item.parent / "latest").write_text("abc123")

    assert sorted(packaging.tidy_store()) == sorted([item, leftover])
    assert not journal.exists() and not item.exists() and not leftover.exists()
    assert not (item.parent / "latest").exists()
    os.close(terminal)
    os.close(device)
    (package / "weights.bin").unlink()
    (package / "weights.bin").write_bytes(b"weights")
    # In a fresh process: BentoML fixes its store when first imported, and this process may have imported it already.
    stored = _run_python(
        """
        import sys
        from pathlib import Path
        from mlops_assets import settings
        settings.export_environment()
        from mlops_assets.packaging import store_model
        print(store_model(Path(sys.argv[1]), "image-classifier", "abc123", {}, {}))
        """.replace("sys.argv[1]", repr(str(package))),
        {**os.environ, "MLOPS_HOME": str(home)},
    )
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.strip().splitlines()[-1] == "image-classifier:abc123"
    assert (item / "weights.bin").read_bytes() == b"weights"
    assert list(temporary.iterdir()) == [] and not journal.exists()


def test_runs_left_in_progress_by_a_dead_process_are_marked_failed(tmp_path: Path) -> None:
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    dead_pid, dead_started = _killed_process()
    host = socket.gethostname()
    dead = {housekeeping.PID_TAG: str(dead_pid), housekeeping.HOST_TAG: host}
    dead[housekeeping.PROCESS_STARTED_TAG] = f"{dead_started:.2f}"
    alive = housekeeping.process_tags()
    elsewhere = {**dead, housekeeping.HOST_TAG: "another-host"}
    started, not_started = dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.NOT_STARTED
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = {
            "killed cli run": create_run_for_test(instance, status=started, tags=dead),
            "killed before it started": create_run_for_test(instance, status=not_started, tags=dead),
            "live cli run": create_run_for_test(instance, status=started, tags=alive),
            "run of another host": create_run_for_test(instance, status=started, tags=elsewhere),
            "run from the UI, not started": create_run_for_test(instance, status=not_started),
            "run from the UI, killed": create_run_for_test(instance, status=started),
            "run from the UI, no pid yet": create_run_for_test(instance, status=dg.DagsterRunStatus.STARTING),
        }
        # What Dagster's in-process executor records for a UI run's worker.
        instance.report_engine_event(
            f"Executing steps in process (pid: {dead_pid})",
            runs["run from the UI, killed"],
            EngineEventData.in_process(dead_pid),
        )

        failed = housekeeping.fail_orphaned_runs(instance)

        statuses = {name: instance.get_run_by_id(run.run_id).status for name, run in runs.items()}
        failure = instance.all_logs(runs["killed cli run"].run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
        again = housekeeping.fail_orphaned_runs(instance)
    killed = ["killed cli run", "killed before it started", "run from the UI, killed"]
    assert sorted(failed) == sorted(
        f"run {runs[name].run_id} was left {runs[name].status.value} by pid {dead_pid}, which is gone; marked it failed"
        for name in killed
    )
    assert statuses == {name: dg.DagsterRunStatus.FAILURE if name in killed else runs[name].status for name in runs}
    assert [entry.dagster_event.message for entry in failure] == [
        f"The process that ran this run (pid {dead_pid} on {host}) is gone: it was killed or crashed while the run "
        "was STARTED. Marked failed by mlops housekeeping; run the job again to build what it did not."
    ]
    assert again == []
