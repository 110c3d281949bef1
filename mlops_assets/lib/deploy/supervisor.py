"""Supervised BentoML servers: started in their own process group, health checked, stopped as a whole group.

A server that cannot start is refused at once: `start_server` names a refusal file in the server's own folder (its
BENTOML_HOME) through the server's environment, the service writes why it cannot start there before it raises
(lib/deploy/startup_refusal.py), and `wait_ready` refuses with that message as soon as it appears, rather than
waiting out the ready timeout while BentoML restarts the failing worker again and again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from mlops_assets.lib.deploy.release import DeploymentError
from mlops_assets.lib.deploy.startup_refusal import REFUSAL_FILE_NAME, REFUSAL_FILE_VARIABLE, read_startup_refusal

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class ServerProcess:
    """A server this project started: its leader's pid, its process group (what is stopped), where it answers."""

    pid: int
    pgid: int
    host: str
    port: int
    url: str
    bento_tag: str  # "" for the router
    log_path: str
    # (pid, start time) of every descendant seen once it was ready: BentoML's workers lead their own process
    # groups, so they are found and stopped by these, even after the leader is gone.
    workers: tuple[tuple[int, float], ...] = ()
    # Where the service writes why it cannot start ("" for a server that writes none, such as the router).
    refusal_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServerProcess:
        return cls(**{**data, "workers": tuple(tuple(worker) for worker in data.get("workers", ()))})


def record_tree(server: ServerProcess) -> ServerProcess:
    """`server` with its leader's descendants now recorded beside those recorded before (call once it is ready).
    Kept, not replaced: a leader killed a moment ago still looks alive (unreaped) but has no children left, and
    the workers it had keep serving; `_live_workers` drops recorded ones that are gone by their start times."""
    import psutil

    try:
        children = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    found = [(child.pid, child.create_time()) for child in children]
    return dataclasses.replace(server, workers=tuple(dict.fromkeys([*server.workers, *found])))


def _live_workers(server: ServerProcess) -> list[int]:
    """The recorded workers still running (a pid reused by another program has another start time)."""
    import psutil

    live = []
    for pid, started in server.workers:
        try:
            if psutil.Process(pid).create_time() == started:
                live.append(pid)
        except psutil.NoSuchProcess:
            continue
    return live


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def reachable_host(host: str) -> str:
    """The address a client on this machine uses for a server bound to `host` (all interfaces: the loopback)."""
    return {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)


def url_for(host: str, port: int) -> str:
    """`http://HOST:PORT` for a server bound to `host`, an IPv6 address in brackets (`http://[::1]:3100`)."""
    reachable = reachable_host(host)
    return f"http://[{reachable}]:{port}" if ":" in reachable else f"http://{reachable}:{port}"


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on `host:port` and it can be bound now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        if probe.connect_ex((reachable_host(host), port)) == 0:
            return False
    with socket.socket(family, socket.SOCK_STREAM) as trial:
        # As servers bind (SO_REUSEADDR): connections of a stopped server in TIME_WAIT do not make the port busy.
        trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            trial.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free on `host` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def group_alive(server: ServerProcess) -> bool:
    """Whether any process of the server's group or any recorded worker still runs (workers may outlive a killed
    leader)."""
    if _live_workers(server):
        return True
    try:
        os.killpg(server.pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_tree(server: ServerProcess, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pgid, signum)
    for pid in _live_workers(server):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


@contextlib.contextmanager
def _stoppable_children() -> Iterator[None]:
    """Children started inside get SIGTERM's default action even where this process ignores it.

    An ignored signal stays ignored across exec, and a server that ignores SIGTERM only stops when it is killed.
    SIGTERM ends up ignored by accident: Dagster's in-process execution copies SIGINT's handler to SIGTERM, and in a
    process started as a background job SIGINT is ignored. A caught signal is reset to its default by exec, so SIGTERM
    is caught (and dropped, as it was ignored anyway) while the child starts. Signal handlers can only be set from
    the main thread; elsewhere the child inherits what this process has."""
    if signal.getsignal(signal.SIGTERM) != signal.SIG_IGN or threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)


def spawn(command: Sequence[str], host: str, port: int, log_path: Path, env: Mapping[str, str], bento_tag: str):
    """Start `command` in a new session (so its whole tree can be stopped), output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log, _stoppable_children():
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
        )
    # The pid leads the new session and its process group; the group id is recorded so that the workers are found
    # and stopped even after the leader is gone.
    return ServerProcess(process.pid, process.pid, host, port, url_for(host, port), bento_tag, str(log_path)), process


def start_server(
    bento_tag: str, host: str, port: int, log_path: Path, env: Mapping[str, str] | None = None
) -> ServerProcess:
    """Start `bentoml serve BENTO_TAG --host H --port P` in its own process group, logging to `log_path`, with
    `env` as its whole environment (default: this process's) plus its own BENTOML_HOME and refusal file. Returns at
    once; `wait_ready` waits for /readyz. Raises DeploymentError when the port is taken."""
    if not port_is_free(host, port):
        raise DeploymentError(f"Port {port} on {host} is in use; stop what listens there or choose another port.")
    bentoml_cli = Path(sys.executable).parent / "bentoml"
    command = [str(bentoml_cli), "serve", bento_tag, "--host", host, "--port", str(port)]
    home = log_path.parent / f".bentoml-{port}"
    env = own_bentoml_home(env if env is not None else os.environ, home)
    # The folder is reused by the next server on this port: an earlier server's refusal must not refuse this one.
    refusal = home / REFUSAL_FILE_NAME
    refusal.unlink(missing_ok=True)
    server, _ = spawn(command, host, port, log_path, {**env, REFUSAL_FILE_VARIABLE: str(refusal)}, bento_tag)
    return dataclasses.replace(server, refusal_path=str(refusal))


def own_bentoml_home(env: Mapping[str, str], home: Path) -> dict[str, str]:
    """`env` with BENTOML_HOME set to `home`, a folder of this server's own that reaches the shared store's bentos
    and models by links. A starting BentoML server empties $BENTOML_HOME/prometheus_multiproc_dir, so two servers
    on one home (staging and production, or an old and a new revision) would blank each other's /metrics."""
    shared = Path(env.get("BENTOML_HOME") or Path.home() / "bentoml")
    home.mkdir(parents=True, exist_ok=True)
    for kind in ("bentos", "models"):
        (shared / kind).mkdir(parents=True, exist_ok=True)
        link = home / kind
        if link.is_symlink() or link.exists():
            if link.is_symlink() and link.resolve() == (shared / kind).resolve():
                continue
            link.unlink()
        link.symlink_to(shared / kind, target_is_directory=True)
    return {**env, "BENTOML_HOME": str(home)}


def log_tail(path: str | Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, or '(no log)'."""
    path = Path(path)
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def _leader_exit_code(pid: int) -> int | None:
    """The leader's exit status when it has exited (reaped here, as its parent), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # not our child (started by another command): alive while signal 0 reaches it
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return -1
        return None
    return os.waitstatus_to_exitcode(status) if done else None


def leader_alive(server: ServerProcess) -> bool:
    """Whether the server's leader process still runs (a killed leader this process started is reaped here)."""
    return _leader_exit_code(server.pid) is None


def _refused(server: ServerProcess) -> DeploymentError | None:
    """The error to raise when the server's service recorded that it cannot start, else None."""
    refusal = read_startup_refusal(server.refusal_path)
    if refusal is None:
        return None
    return DeploymentError(f"{refusal} The server for {server.bento_tag} refused to start; its log: {server.log_path}")


def wait_ready(server: ServerProcess, timeout_s: float, path: str = "/readyz") -> None:
    """Return once `GET <path>` answers 200. Raises DeploymentError with the service's own message as soon as it
    records that it cannot start, and with the log's tail when the server exits or does not become ready within
    `timeout_s` seconds (the server is left running: the caller stops it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        refused = _refused(server)
        if refused is not None:
            raise refused
        code = _leader_exit_code(server.pid)
        if code is not None:
            raise _refused(server) or DeploymentError(
                f"The server for {server.bento_tag or 'the router'} exited (status {code}) before it was ready. "
                f"Last log lines ({server.log_path}):\n{log_tail(server.log_path)}"
            )
        try:
            if httpx.get(f"{server.url}{path}", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise DeploymentError(
        f"The server for {server.bento_tag or 'the router'} was not ready within {timeout_s:.0f} s; raise "
        f"ready_timeout_s if it needs longer. Last log lines ({server.log_path}):\n{log_tail(server.log_path)}"
    )


def stop_server(server: ServerProcess, grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group and its recorded workers, SIGKILL what is left after `grace_s` seconds,
    then check its port is free; raises DeploymentError when something still listens there."""
    if leader_alive(server):  # workers started since it was recorded (BentoML restarts a dead worker)
        server = record_tree(server)
    _signal_tree(server, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while group_alive(server) and time.monotonic() < deadline:
        _leader_exit_code(server.pid)  # reap the leader when it is our child, so the group can vanish
        time.sleep(0.1)
    if group_alive(server):
        _signal_tree(server, signal.SIGKILL)
        kill_deadline = time.monotonic() + 5
        while group_alive(server) and time.monotonic() < kill_deadline:
            _leader_exit_code(server.pid)
            time.sleep(0.1)
    deadline = time.monotonic() + 5
    while not port_is_free(server.host, server.port) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not port_is_free(server.host, server.port):
        raise DeploymentError(
            f"Port {server.port} on {server.host} is still in use after stopping process group {server.pgid}; "
            "another program listens there: stop it."
        )
