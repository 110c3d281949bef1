"""Local deployment (`mlops deploy local`): a bento served by a background BentoML server on loopback, started,
watched until ready (or refused as soon as its service says it cannot start) and stopped by the deployment
supervisor (lib/deploy/supervisor.py), which the deployment stages use too."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mlops_assets import settings

# The deployments' error, under the name this module always offered: a server that could not be started or stopped.
from mlops_assets.lib.deploy.release import DeploymentError
from mlops_assets.lib.deploy.supervisor import (
    ServerProcess,
    group_alive,
    port_is_free,
    record_tree,
    start_server,
    stop_server,
    url_for,
    wait_ready,
)


@dataclass(frozen=True)
class LocalDeployment:
    """A running server: enough to reach it and to stop it."""

    bento_tag: str
    url: str
    pid: int
    log_path: str
    # (pid, start time) of the server's workers once it was ready: they lead their own process groups and keep
    # serving the port when the leader is killed, so they are stopped by this record (lib/deploy/supervisor.py).
    workers: tuple[tuple[int, float], ...] = ()

    def server(self) -> ServerProcess:
        """The supervisor's view of this server (what `stop_server` and `group_alive` take)."""
        address = urlsplit(self.url)
        return ServerProcess(
            self.pid, self.pid, address.hostname, address.port, self.url, self.bento_tag, self.log_path, self.workers
        )


def _state_file() -> Path:
    return settings.deployments_dir() / "local.json"


def recorded_deployment() -> LocalDeployment | None:
    """The last local deployment recorded, running or not; None when there is no record. Raises DeploymentError
    naming the file when the record cannot be read."""
    path = _state_file()
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        return LocalDeployment(**{**data, "workers": tuple(tuple(w) for w in data.get("workers", ()))})
    except (ValueError, TypeError, AttributeError) as error:
        raise DeploymentError(
            f"The local deployment's record {path} is damaged ({error}); delete it, and stop the `bentoml serve` "
            "process it recorded yourself if one still runs."
        ) from None


def current_deployment() -> LocalDeployment | None:
    """The recorded local deployment if any process of it still runs (stop it with `stop_local`)."""
    deployment = recorded_deployment()
    return deployment if deployment is not None and group_alive(deployment.server()) else None


def start_bento_server(
    bento_tag: str,
    host: str,
    port: int,
    log_path: Path,
    ready_timeout_s: float,
    environment: dict[str, str] | None = None,
) -> ServerProcess:
    """Start `bentoml serve` through the supervisor (own process group and BENTOML_HOME, `log_path` emptied first so
    an error's log tail shows this start's lines) and wait until /readyz answers; `environment` adds variables to
    the server's (e.g. where its prediction logs go). Returns the ready server with its workers recorded.

    Raises DeploymentError, the server stopped, when the port is taken, when the service says it cannot start (with
    its own message, as soon as it says so), when the server exits, or when it is not ready within
    `ready_timeout_s` seconds (with the log's tail). Records nothing: `deploy_local` adds the state file; a caller
    that starts a server this way stops it with `stop_server(server)` (or `stop_process_group(server.pid)`).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(b"")
    env = {**os.environ, **settings.export_environment(), **(environment or {})}
    server = start_server(bento_tag, host, port, log_path, env)
    try:
        wait_ready(server, ready_timeout_s)
    except BaseException:
        stop_server(server, grace_s=15.0)
        raise
    return record_tree(server)


def require_local_bento(bento_tag: str, model_version: int | None = None) -> None:
    """Raise DeploymentError, naming how to get it back, when `bento_tag` is not in this machine's BentoML store
    (checked before anything is started or stopped)."""
    from mlops_assets.packaging import _bentoml

    bentoml = _bentoml()
    try:
        bentoml.bentos.get(bento_tag)
    except bentoml.exceptions.NotFound:
        version = f"version {model_version}" if model_version is not None else "its version (`mlops models list`)"
        restore = f"mlops models restore {model_version}" if model_version is not None else "mlops models restore N"
        raise DeploymentError(
            f"Bento {bento_tag} is not in the BentoML store at {settings.bentoml_home()}; nothing was started or "
            f"stopped. Put the model of {version} back with `{restore}` and rebuild the bento with `mlops run`, "
            "or deploy another version."
        ) from None


def deploy_local(bento_tag: str, port: int | None = None, host: str | None = None) -> LocalDeployment:
    """Serve `bento_tag` on this machine in the background (replacing a running local deployment) and wait until
    ready, with the selected environment's `server:` settings; the bento is brought from the environment's bento
    store when this machine lacks it, and the server logs predictions where the environment keeps them."""
    from mlops_assets.environments import fetch_bento, opened

    config = settings.environment_settings().server
    host = host or config.host
    port = port or config.port
    running = current_deployment()
    # Checked before anything is stopped: a port held by another program must not cost the running server.
    if not port_is_free(host, port) and (running is None or running.url != url_for(host, port)):
        raise DeploymentError(
            f"Port {port} on {host} is in use by another program; nothing was stopped. Stop it or pass --port."
        )
    fetch_bento(bento_tag)
    require_local_bento(bento_tag)
    stop_local()
    if not port_is_free(host, port):
        raise DeploymentError(f"Port {port} on {host} is in use; stop what listens there or pass --port.")
    with opened("prediction_logs") as logs:
        problem = logs.problem()
        if problem:
            raise DeploymentError(f"Prediction logs cannot be kept at {logs.where()}: {problem}.")
        server_environment = logs.server_environment()
    log_path = settings.logs_dir() / "local-server.log"
    server = start_bento_server(bento_tag, host, port, log_path, config.ready_timeout_s, server_environment)
    deployment = LocalDeployment(bento_tag, server.url, server.pid, str(log_path), server.workers)
    _state_file().parent.mkdir(parents=True, exist_ok=True)
    _state_file().write_text(json.dumps(asdict(deployment), indent=1))
    return deployment


def stop_process_group(pid: int, grace_s: float = 15.0) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL what is left after `grace_s` (for a caller that kept
    only the pid; `stop_server` also stops workers that outlived a killed leader)."""
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
        # The process group and every recorded worker (which outlive a killed leader), then the port checked free.
        stop_server(deployment.server(), grace_s=15.0)
    _state_file().unlink(missing_ok=True)
    return deployment
