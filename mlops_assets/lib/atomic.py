"""Files and directories that appear whole or not at all, so a crashed run never leaves a half result that looks
complete; and which half results are left over from a process that is gone.

Work in progress is written next to its destination under a name `.partial-<pid>-<random>` (the writer's process id),
so start-up housekeeping can tell one a live process is still writing from one whose writer died.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

PARTIAL_PREFIX = ".partial-"
_OWNED = re.compile(rf"^{re.escape(PARTIAL_PREFIX)}(\d+)-")
# Process start times and file times come from different clocks (boot time + ticks vs. the file system).
_CLOCK_SLACK_S = 1.0


def _partial_prefix() -> str:
    return f"{PARTIAL_PREFIX}{os.getpid()}-"


@contextmanager
def atomic_directory(destination: Path) -> Iterator[Path]:
    """Yield a temporary sibling to fill; on success it becomes `destination`, on any error it is removed.

    Destinations are keyed by content, so when another process finished the same `destination` while this one was
    filling its copy, theirs is kept (it is whole, and readers may already use it) and this copy is dropped. A
    destination that existed before this call began is one its caller chose to rebuild: it is replaced.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    existed = destination.exists()
    staging = Path(tempfile.mkdtemp(prefix=_partial_prefix(), dir=destination.parent))
    try:
        yield staging
        if existed and destination.exists():
            _remove_quietly(_set_aside(destination))
        try:
            staging.rename(destination)
        except OSError:
            if not destination.is_dir():
                raise
            shutil.rmtree(staging)  # a concurrent writer got there first with the same content
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _set_aside(path: Path) -> Path:
    """Rename `path` to a partial name of this process (so a crash now leaves only a removable leftover)."""
    aside = Path(tempfile.mkdtemp(prefix=_partial_prefix(), dir=path.parent))
    aside.rmdir()
    path.rename(aside)
    return aside


def _remove_quietly(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a partial file of this process, replaced into place (readers see old or new)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=_partial_prefix(), suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """`atomic_write_bytes` of `text` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def process_alive(pid: int, since: float) -> bool:
    """Whether process `pid` exists and was already running at `since` (epoch seconds).

    A process started after `since` only reuses the number of the one that was meant, which is gone.
    """
    try:
        return psutil.Process(pid).create_time() <= since + _CLOCK_SLACK_S
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # it exists; its start time is hidden from us, so assume it is the owner


def partial_owner_alive(path: Path) -> bool:
    """Whether the process that is writing the partial file or directory `path` is still running.

    Its last change (mtime) happened while its writer lived, so a live process started later is not the writer.
    Partial names without a process id come from before owners were recorded: nobody owns them.
    """
    match = _OWNED.match(path.name)
    if match is None:
        return False
    try:
        changed = path.lstat().st_mtime
    except FileNotFoundError:
        return True  # its writer just finished or removed it: nothing to clean up
    return process_alive(int(match.group(1)), changed)


def remove_stale_partials(directory: Path) -> list[Path]:
    """Remove the `.partial-*` entries directly in `directory` whose writer is gone; returns what was removed."""
    removed = []
    try:
        entries = list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if entry.name.startswith(PARTIAL_PREFIX) and not partial_owner_alive(entry):
            _remove_quietly(entry)
            removed.append(entry)
    return removed
