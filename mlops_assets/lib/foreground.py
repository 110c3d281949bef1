"""Run a long-lived command (a development server and the processes it starts) until it ends or is told to stop.

The command leads a session of its own, and everything it starts stays in that session unless it leaves on purpose
(calls setsid, as a BentoML server started by a deployment does; whoever starts such a server records and stops it).
SIGINT (Ctrl-C), SIGTERM (a service manager, `kill`) and SIGHUP (the terminal closed) sent to this process all stop
it the same way: the command's process group gets SIGINT, which is what Ctrl-C sends a foreground program and what
it shuts down cleanly on. If the command is still running after a grace period, every process left in its session
is killed (SIGKILL), and `say` is told so; whatever a clean shutdown left in the session is killed too. A signal that
arrives before the command is started means it is not started. A caller's check that finds the command broken
while it runs (`mlops dev`: a webserver that cannot serve the UI) stops it the same way.

The signal handlers only append to a list and the main loop acts on it. A handler that takes a lock (as
`threading.Event.set` does) deadlocks when the signal lands while the main thread holds that same lock inside
`Event.wait`: this process then waited forever and the command was never told to stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType

import psutil

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Ignored at start only by convention (a shell's background job ignores SIGINT, `nohup` SIGHUP): those stay ignored.
# SIGTERM is a service manager's stop request and is always caught: an ignored SIGTERM is inherited by accident, e.g.
# from a process in which Dagster's in-process execution copied an ignored SIGINT's handler to SIGTERM.
_INHERITED_IGNORES = (signal.SIGINT, signal.SIGHUP)
# How long the command has to shut down cleanly after SIGINT before what is left of its session is killed.
GRACE_S = 30.0
_POLL_S = 0.2
# A process forking while its session is being killed can leave a child one sweep did not see: the session is swept
# until it is empty (killed processes fork no more), for at most this long.
_KILL_S = 10.0
# How much of a process's command line the lines about killed processes show (see `describe`).
_ARGUMENT_CHARS = 80
_LINE_CHARS = 240


def print_to_stderr(text: str) -> None:
    """`text` as a line on stderr, if there still is one."""
    with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP): stopping matters more than saying so
        print(text, file=sys.stderr, flush=True)


class StopSignals:
    """While entered, SIGINT, SIGTERM and SIGHUP are recorded in `received` (signal numbers, in order) instead of
    acted on; a SIGINT or SIGHUP that whoever started this process ignores (a background job's SIGINT) stays ignored,
    SIGTERM is always caught. Enter in the main thread, as early as possible: from then on a stop request is never
    lost."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        for number in STOP_SIGNALS:
            self._previous[number] = signal.getsignal(number)
            if self._previous[number] != signal.SIG_IGN or number not in _INHERITED_IGNORES:
                signal.signal(number, self._record)
        return self

    def __exit__(self, *_: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _record(self, number: int, _frame: FrameType | None) -> None:
        self.received.append(number)  # no lock: see the module docstring

    @property
    def first(self) -> str | None:
        """The name of the first stop signal received (`SIGTERM`), or None."""
        return signal.Signals(self.received[0]).name if self.received else None

    @contextlib.contextmanager
    def defaults_for_children(self) -> Iterator[None]:
        """Catch (and drop) the ignored stop signals while a child is started: a caught signal is reset to its
        default in an exec'd program, an ignored one stays ignored, and the child must stop on the SIGINT relayed."""
        ignored = [
            number
            for number, handler in self._previous.items()
            if handler == signal.SIG_IGN and number in _INHERITED_IGNORES
        ]
        for number in ignored:
            signal.signal(number, lambda *_: None)
        try:
            yield
        finally:
            for number in ignored:
                signal.signal(number, signal.SIG_IGN)


def run_in_foreground(
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    stop: StopSignals,
    grace_s: float = GRACE_S,
    say: Callable[[str], None] = print_to_stderr,
    failure: Callable[[int], str | None] | None = None,
) -> int:
    """Run `command` in a new session until it exits, `stop` records a signal or `failure` finds it broken. Returns
    the command's exit status when it ended by itself (128 + the signal number when a signal ended it); when a
    signal stopped it: 0 if it ended within `grace_s` (whatever it exited with: a program interrupted while it starts
    may say "Aborted!" or die of the SIGINT), 128 + SIGKILL if it had to be killed; 0 when the signal came before it
    was started (it is not started then). `failure` is called with the session id at every poll (0.2 s) while the
    command runs: when it returns a reason (a line for the user), `say` gets it, the session is stopped as on a signal
    and 1 is returned. `say` gets a line for each thing the user should know about a stop (why, what was sent, what
    had to be killed).
    Call from the main thread, inside `stop`."""
    name = Path(command[0]).name
    if stop.received:
        say(f"{stop.first} received before {name} was started; not starting it")
        return 0
    with stop.defaults_for_children():
        process = subprocess.Popen(list(command), env=dict(env), cwd=cwd, start_new_session=True)
    stopped = False
    broken = None
    try:
        while process.poll() is None and not stop.received:
            if failure is not None and (broken := failure(process.pid)) is not None:
                break
            time.sleep(_POLL_S)
        stopped = process.poll() is None
    finally:
        # Also on an exception here (a failure check that raised): nothing of the session is left running.
        if stopped and broken is not None:
            say(broken)
            reason = None
        else:
            reason = f"{stop.first or 'stop'} received"
        _stop_session(process, name, reason, grace_s, say)
    if stopped and broken is not None:
        return 1
    if stopped and process.returncode != -signal.SIGKILL:
        return 0
    return process.returncode if process.returncode >= 0 else 128 - process.returncode


def _stop_session(
    process: subprocess.Popen, name: str, reason: str | None, grace_s: float, say: Callable[[str], None]
) -> None:
    """SIGINT to the command's group (unless it already ended), said with `reason` (`SIGTERM received`; None when the
    reason was said already); after `grace_s`, SIGKILL to every process left in its session; then SIGKILL to
    whatever its orderly shutdown left there (of its group: what is still running at the end of the grace; outside
    it, which the SIGINT did not reach: at once)."""
    session = process.pid  # a new session's leader: the session and its process group have its pid
    if process.poll() is None:
        stopping = f"stopping {name} (SIGINT to its processes, killed after {grace_s:g} s)"
        say(f"{reason}: {stopping}" if reason else stopping)
        _signal_group(session, signal.SIGINT)
        deadline = time.monotonic() + grace_s
        try:
            process.wait(timeout=grace_s)
            # The rest of its group got the SIGINT too and may still be shutting down when the leader is done (a
            # child handling its KeyboardInterrupt): each has what is left of the grace before it counts as left.
            while (members := _group_members(session)) and time.monotonic() < deadline:
                time.sleep(_POLL_S)
            if members:
                left = [describe(member) for member in session_processes(session)]
                say(
                    f"{name} ended, but {len(members)} of its processes were still running {grace_s:g} s after "
                    f"SIGINT: killing the {len(left)} process(es) left in its session (SIGKILL): {', '.join(left)}"
                )
                _kill_session(session)
                return
        except subprocess.TimeoutExpired:
            left = [describe(member) for member in session_processes(session)]
            say(
                f"{name} still running {grace_s:g} s after SIGINT: killing the {len(left)} process(es) left in its "
                f"session (SIGKILL): {', '.join(left)}"
            )
            _kill_session(session)
            process.wait()
            return
    left = _kill_session(session)
    if left:
        say(f"{name} ended and left {len(left)} process(es) running: killed them (SIGKILL): {', '.join(left)}")


def session_processes(session: int) -> list[psutil.Process]:
    """The live (not zombie) processes whose session id is `session`."""
    found = []
    for candidate in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
            if os.getsid(candidate.pid) == session and candidate.status() != psutil.STATUS_ZOMBIE:
                found.append(candidate)
    return found


def _group_members(group: int) -> list[psutil.Process]:
    """The live processes of the session led by `group` that are in its process group (those a SIGINT to it reached)."""
    members = []
    for member in session_processes(group):
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(member.pid) == group:
                members.append(member)
    return members


def _kill_session(session: int) -> list[str]:
    """SIGKILL every process in the session until none is left; returns those it killed, described."""
    killed: dict[int, str] = {}
    deadline = time.monotonic() + _KILL_S
    while members := session_processes(session):
        for member in members:
            killed.setdefault(member.pid, describe(member))
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()  # psutil checks that the pid still names the same process (its start time)
        if time.monotonic() > deadline:
            break  # SIGKILL cannot be refused: what is still listed is exiting (a process stuck in the kernel)
        time.sleep(0.05)
    return list(killed.values())


def describe(process: psutil.Process) -> str:
    """`PID COMMAND LINE`, shortened: the program's file name without its folder, each argument longer than
    `_ARGUMENT_CHARS` cut to that many characters ending in "...", the whole line to `_LINE_CHARS` (a code server and
    a run worker are told apart by their arguments, and Dagster passes a serialized instance on the command line)."""
    try:
        arguments = process.cmdline()
        words = [Path(arguments[0]).name, *arguments[1:]] if arguments else [process.name()]
    except psutil.Error:
        return f"{process.pid} (ended)"
    line = " ".join(_shortened(word, _ARGUMENT_CHARS) for word in words)
    return f"{process.pid} {_shortened(line, _LINE_CHARS)}"


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _signal_group(group: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # nobody is left in it
        os.killpg(group, number)
