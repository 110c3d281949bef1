"""A server that cannot start says so to whoever started it, at once.

A BentoML worker whose service raises in its constructor is restarted by BentoML's process manager again and again
while the server's leader process lives on, so a starter polling /readyz would only learn of it when its ready
timeout runs out. Instead, the starter names a file in the server's environment (REFUSAL_FILE_VARIABLE); the service
writes its refusal there before it raises (`startup_refused`), and the starter's ready-wait refuses with that
message as soon as the file appears (`read_startup_refusal`, lib/deploy/supervisor.py `wait_ready`). A server
started without the variable (a container, `bentoml serve` by hand) just raises.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlops_assets.lib.errors import MLOpsError

# The environment variable holding the path of the refusal file; set by the starter, read by the service.
REFUSAL_FILE_VARIABLE = "MLOPS_STARTUP_REFUSAL_FILE"
# The file's name in the server's own folder (its BENTOML_HOME, see supervisor.own_bentoml_home).
REFUSAL_FILE_NAME = "startup-refusal.txt"


def record_startup_refusal(message: str) -> None:
    """Write `message` (why the service cannot start) to the file REFUSAL_FILE_VARIABLE names; a no-op when the
    variable is unset. Every worker writing it writes the same message, so the last one wins harmlessly."""
    path = os.environ.get(REFUSAL_FILE_VARIABLE)
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside and renamed into place: the starter never reads half a message.
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    partial.write_text(message, encoding="utf-8")
    os.replace(partial, target)


def startup_refused(message: str) -> MLOpsError:
    """The error a service raises when it cannot start (`message` says why and what to do), recorded first for the
    starter (`record_startup_refusal`)."""
    record_startup_refusal(message)
    return MLOpsError(message)


def read_startup_refusal(path: str | Path) -> str | None:
    """The refusal recorded at `path`, or None when there is none (no path given, or no file yet)."""
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
