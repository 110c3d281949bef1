"""Start-up housekeeping on one home: runs whose process died are failed, leftovers no live process owns are removed.

Runs on one home may overlap (two `mlops run`, the UI), and any of them may be killed. What a killed process leaves
is recognised by its owner being gone, never by age, so nothing a live process is still writing is touched:

- Dagster runs left STARTED/STARTING (or, from `mlops`, NOT_STARTED) by a process that no longer exists are reported
  failed through the instance, with a message. `mlops` records its process in the run's tags (`process_tags`); for
  other runs the pid Dagster's in-process executor records ("Executing steps in process (pid: N)") is used.
- Partial artifacts (`.partial-<pid>-*`, see lib/atomic.py) whose writer is gone are removed.
- A BentoML store item a killed process was writing, and BentoML's temporary folders, are removed when no process
  is writing to the store (packaging.tidy_store).
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from mlops_assets import settings
from mlops_assets.lib.atomic import PARTIAL_PREFIX, process_alive, remove_stale_partials

if TYPE_CHECKING:
    from dagster import DagsterInstance, DagsterRun

PID_TAG = "mlops/pid"
HOST_TAG = "mlops/host"
PROCESS_STARTED_TAG = "mlops/process_started"
# Folders of the home whose partial entries are not `.partial-*` ones: the instance and the BentoML store have their
# own rules (above); locks hold no data.
_NOT_SCANNED = {"dagster", "bentoml", "locks"}
# Deep enough for artifacts/<kind>/<version>/<file>; validated data and Data Docs below that are written whole.
_SCAN_DEPTH = 3

logger = logging.getLogger(__name__)


@dataclass
class Tidied:
    """What housekeeping did: runs marked failed (one sentence each) and leftovers removed."""

    failed_runs: list[str] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)

    def notes(self) -> list[str]:
        """One line per action, for the CLI and the code location's log."""
        notes = list(self.failed_runs)
        if self.removed:
            listed = ", ".join(str(path) for path in self.removed[:5])
            more = f" and {len(self.removed) - 5} more" if len(self.removed) > 5 else ""
            notes.append(f"removed {len(self.removed)} leftovers of killed processes: {listed}{more}")
        return notes


def process_tags() -> dict[str, str]:
    """Run tags naming this process (pid, host, start time), so a later start can tell whether it is still alive."""
    return {
        PID_TAG: str(os.getpid()),
        HOST_TAG: socket.gethostname(),
        PROCESS_STARTED_TAG: f"{psutil.Process().create_time():.2f}",
    }


def _executor_process(instance: DagsterInstance, run: DagsterRun) -> tuple[int, float] | None:
    """The pid the run's in-process executor recorded, and when (None: it recorded none yet)."""
    import dagster as dg

    for entry in reversed(instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)):
        pid = entry.dagster_event.event_specific_data.metadata.get("pid")
        if pid is not None:
            return int(pid.value), entry.timestamp
    return None


def _owner(instance: DagsterInstance, run: DagsterRun) -> tuple[int, str, float] | None:
    """(pid, host, a time it was alive) of the process running `run`, or None when this host cannot tell."""
    tags = run.tags
    if PID_TAG in tags:
        # Without its start time, any process with that pid counts as the owner (alive), never the reverse.
        return int(tags[PID_TAG]), tags.get(HOST_TAG, ""), float(tags.get(PROCESS_STARTED_TAG, "inf"))
    recorded = _executor_process(instance, run)
    if recorded is None:
        return None
    # The local instance is this machine's: Dagster records no host, and its run workers run here.
    return recorded[0], socket.gethostname(), recorded[1]


def fail_orphaned_runs(instance: DagsterInstance) -> list[str]:
    """Report failed every run left in progress by a process that is gone; one sentence per run."""
    import dagster as dg

    in_progress = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.CANCELING]
    # A run `mlops` created but never started (killed in between) is not in progress, but is just as dead.
    candidates = [record.dagster_run for record in instance.get_run_records(dg.RunsFilter(statuses=in_progress))]
    candidates += [
        record.dagster_run
        for record in instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.NOT_STARTED]))
        if PID_TAG in record.dagster_run.tags
    ]
    here, failed = socket.gethostname(), []
    for run in candidates:
        owner = _owner(instance, run)
        if owner is None or owner[1] != here or owner[0] == os.getpid() or process_alive(owner[0], owner[2]):
            continue
        status = run.status.value
        message = (
            f"The process that ran this run (pid {owner[0]} on {owner[1]}) is gone: it was killed or crashed while "
            f"the run was {status}. Marked failed by mlops housekeeping; run the job again to build what it did not."
        )
        instance.report_run_failed(run, message)
        failed.append(f"run {run.run_id} was left {status} by pid {owner[0]}, which is gone; marked it failed")
    return failed


def remove_partial_artifacts(home: Path) -> list[Path]:
    """Remove `.partial-*` files and folders under `home` whose writing process is gone."""
    removed: list[Path] = []

    def scan(directory: Path, depth: int) -> None:
        removed.extend(remove_stale_partials(directory))
        if depth == _SCAN_DEPTH:
            return
        for child in sorted(directory.iterdir()):
            if depth == 0 and child.name in _NOT_SCANNED:
                continue
            if child.is_dir() and not child.is_symlink() and not child.name.startswith(PARTIAL_PREFIX):
                scan(child, depth + 1)

    if home.is_dir():
        scan(home, 0)
    # Asset values the IO manager writes (resources/run_outputs.py): the latest beside Dagster's run folders, and
    # one per run under outputs/<asset>.
    from mlops_assets.resources.run_outputs import OUTPUTS_DIR

    storage = home / "dagster" / "storage"
    removed.extend(remove_stale_partials(storage))
    if (storage / OUTPUTS_DIR).is_dir():
        for asset in sorted((storage / OUTPUTS_DIR).iterdir()):
            removed.extend(remove_stale_partials(asset))
    return removed


def tidy(instance: DagsterInstance | None) -> Tidied:
    """All of the above on MLOPS_HOME (runs only with an instance); what it did, for the caller to report."""
    from mlops_assets.packaging import tidy_store

    tidied = Tidied()
    # One housekeeper at a time: two starts at once would otherwise both report the same dead run failed.
    with settings.home_lock("housekeeping"):
        if instance is not None:
            tidied.failed_runs = fail_orphaned_runs(instance)
        tidied.removed = remove_partial_artifacts(settings.mlops_home()) + tidy_store()
    _tidied_homes.add(settings.mlops_home())
    return tidied


# Start-up housekeeping runs once per process and home: `mlops run` tidies before it loads the code location, whose
# load would otherwise tidy again.
_tidied_homes: set[Path] = set()


def at_code_location_load() -> None:
    """Tidy when the code location loads (the UI's code server, a run worker), logging what was done.

    Runs are checked only where DAGSTER_HOME names the instance (as `mlops dev` sets it). A failure is logged as a
    warning and does not stop the definitions from loading: housekeeping is retried at the next start.
    """
    if settings.mlops_home() in _tidied_homes:
        return
    try:
        if os.environ.get("DAGSTER_HOME"):
            with settings.open_instance() as instance:
                tidied = tidy(instance)
        else:
            tidied = tidy(None)
    except Exception as error:  # reported below, and retried at the next start
        logger.warning(
            "mlops housekeeping failed (%s: %s); it runs again at the next start.", type(error).__name__, error
        )
        return
    for note in tidied.notes():
        logger.warning("mlops housekeeping: %s", note)
