"""Where a model came from: the git commit of the code that trained it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

UNKNOWN = "unknown"


@dataclass(frozen=True)
class GitState:
    """The checkout's HEAD commit ("unknown" without git) and whether tracked files differ from it (None: unknown)."""

    commit: str
    dirty: bool | None

    @property
    def dirty_label(self) -> str:
        """The dirty flag as text; an unknown state is never reported as clean."""
        return dirty_label(self.dirty)


def dirty_label(dirty: bool | None) -> str:
    """How a recorded dirty flag reads: "dirty", "clean", or "unknown" when git could not tell."""
    return UNKNOWN if dirty is None else "dirty" if dirty else "clean"


def describe_commit(commit: str, dirty: bool | None, length: int = 10) -> str:
    """A short commit for tables: `abc1234567`, `abc1234567+dirty`, `abc1234567 (dirty: unknown)` or `unknown`."""
    if commit == UNKNOWN:
        return UNKNOWN
    short = commit[:length]
    return short if dirty is False else f"{short}+dirty" if dirty else f"{short} (dirty: unknown)"


def _git(directory: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=True, timeout=10).stdout


def git_state(directory: Path) -> GitState:
    """Commit and dirtiness of the checkout at `directory`.

    Outside a git checkout, or without a `git` executable, both are unknown: commit "unknown", dirty None.
    """
    try:
        commit = _git(directory, "rev-parse", "HEAD").strip()
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return GitState(UNKNOWN, dirty=None)
    try:
        status = _git(directory, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        # The commit is known but not whether the working tree matches it: say so rather than guess "clean".
        return GitState(commit, dirty=None)
    return GitState(commit, dirty=bool(status.strip()))
