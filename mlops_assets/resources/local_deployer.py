"""Local deployment: a bento served by a background BentoML server on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from mlops_assets import settings


class DeploymentError(RuntimeError):
    """The local server could not be started or stopped."""


@dataclass(frozen=True)
class LocalDeployment:
    """A running server: enough to reach it and to stop it."""

    bento_tag: str
    url: str
    pid: int
    log_path: str


def _state_file() -> Path:
    return settings.deployments_dir() / "local.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def current_deployment() -> LocalDeployment | None:
    """The recorded local deployment if its process still runs."""
    path = _state_file()
    if not path.exists():
        return None
    deployment = LocalDeployment(**json.loads(path.read_text()))
    return deployment if _alive(deployment.pid) else None


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((host, port)) != 0


def _wait_ready(process: subprocess.Popen, url: str, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DeploymentError(
                f"The BentoML server exited with code {process.returncode} before it was ready. "
                f"Last log lines:\n{_tail(log_path)}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise DeploymentError(f"The BentoML server was not ready within {timeout_s:.0f} s. Log:\n{_tail(log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


def start_bento_server(
    bento_tag: str,
    host: str,
    port: int,
    log_path: Path,
    ready_timeout_s: float,
    environment: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start `bentoml serve` in its own process group, logging to `log_path`, and wait until /readyz answers;
    `environment` adds variables to the server's (e.g. where its prediction logs go).

    Records nothing: `deploy_local` adds the state file; a caller that starts a server this way stops it with
    `stop_process_group(process.pid)`.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **settings.export_environment(), **(environment or {})}
    bentoml_cli = Path(sys.executable).parent / "bentoml"
    command = [str(bentoml_cli), "serve", bento_tag, "--host", host, "--port", str(port)]
    with log_path.open("wb") as log:
        # Own session so the server and its workers can be stopped together, whatever shell started us.
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    try:
        _wait_ready(process, f"http://{host}:{port}", ready_timeout_s, log_path)
    except BaseException:
        stop_process_group(process.pid)
        raise
    return process


def deploy_local(bento_tag: str, port: int | None = None, host: str | None = None) -> LocalDeployment:
    """Serve `bento_tag` on this machine in the background (replacing a running local deployment) and wait until
    ready, with the selected environment's `server:` settings; the bento is brought from the environment's bento
    store when this machine lacks it, and the server logs predictions where the environment keeps them."""
    from mlops_assets.environments import fetch_bento, opened

    config = settings.environment_settings().server
    host = host or config.host
    port = port or config.port
    stop_local()
    if not port_is_free(host, port):
        raise DeploymentError(f"Port {port} on {host} is in use; stop what listens there or pass --port.")
    fetch_bento(bento_tag)
    with opened("prediction_logs") as logs:
        problem = logs.problem()
        if problem:
            raise DeploymentError(f"Prediction logs cannot be kept at {logs.where()}: {problem}.")
        server_environment = logs.server_environment()
    log_path = settings.logs_dir() / "local-server.log"
    process = start_bento_server(bento_tag, host, port, log_path, config.ready_timeout_s, server_environment)
    url = f"http://{host}:{port}"
    deployment = LocalDeployment(bento_tag, url, process.pid, str(log_path))
    _state_file().parent.mkdir(parents=True, exist_ok=True)
    _state_file().write_text(json.dumps(asdict(deployment), indent=1))
    return deployment


def stop_process_group(pid: int, grace_s: float = 15.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `grace_s`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def stop_local() -> LocalDeployment | None:
    """Stop the local deployment if one runs; returns what was stopped."""
    deployment = current_deployment()
    if deployment is not None:
        stop_process_group(deployment.pid)
    _state_file().unlink(missing_ok=True)
    return deployment
