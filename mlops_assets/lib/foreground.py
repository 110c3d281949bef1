"""Run a long-lived command (a development server and the processes it starts) until it ends or is told to stop.

The command runs in a process group of its own. SIGINT (Ctrl-C), SIGTERM (a service manager, `kill`) and SIGHUP (the
terminal closed) sent to this process all stop it the same way: the whole group gets SIGINT, which is what Ctrl-C
sends a foreground program and what it shuts down cleanly on. The leader is killed if it has not ended after a grace
period, and whatever it left of the group when it ended is killed. Relaying the signal ourselves also covers a
process started with SIGINT ignored (a background job of a non-interactive shell), whose children would otherwise
inherit the ignored SIGINT and not stop at all.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# How long the group has to shut down cleanly after SIGINT before what is left of it is killed.
GRACE_S = 30.0
_POLL_S = 0.2


def run_in_foreground(command: Sequence[str], env: Mapping[str, str], cwd: Path, grace_s: float = GRACE_S) -> int:
    """Run `command` until it exits or this process gets a stop signal; returns its exit status (128 + the signal
    number when it was killed by one). Call from the main thread (signal handlers are installed there)."""
    stop = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in STOP_SIGNALS}
    try:
        # Handlers are in place before the fork: the command starts with each signal's default action even where
        # this process ignores it (a caught signal is reset to its default in an exec'd program, an ignored one
        # stays ignored), so the SIGINT relayed to it stops it.
        process = subprocess.Popen(list(command), env=dict(env), cwd=cwd, start_new_session=True)
        for number, handler in previous.items():
            if handler == signal.SIG_IGN:
                signal.signal(number, signal.SIG_IGN)  # ignored by whoever started us (nohup, a background job)
        try:
            while process.poll() is None and not stop.wait(_POLL_S):
                pass
        finally:
            _stop_group(process, grace_s)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return process.returncode if process.returncode >= 0 else 128 - process.returncode


def _stop_group(process: subprocess.Popen, grace_s: float) -> None:
    """SIGINT to the group (unless its leader already ended), SIGKILL to the leader if it is still running after
    `grace_s`, then SIGKILL to whatever its orderly shutdown left of the group."""
    group = process.pid  # a new session's leader: its process group has its pid
    if process.poll() is None:
        _signal_group(group, signal.SIGINT)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(group, signal.SIGKILL)
            process.wait()
    _signal_group(group, signal.SIGKILL)


def _signal_group(group: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # nobody is left in it
        os.killpg(group, number)
