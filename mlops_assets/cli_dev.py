"""`mlops dev`: the Dagster UI (`dg dev`) on this project's instance, on a port checked before anything starts, and
stopped as a whole when its webserver cannot serve the UI."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from mlops_assets import settings
from mlops_assets.lib.deploy.validation import DAGSTER_UI_PORT
from mlops_assets.lib.foreground import StopSignals, describe, print_to_stderr, run_in_foreground, session_processes
from mlops_assets.lib.settings_validation import ConfigError

if TYPE_CHECKING:
    from mlops_assets.lib.environment_settings import EnvironmentSettings

# `dg dev` serves the UI on the loopback only (its default host; see README "The Dagster UI").
UI_HOST = "127.0.0.1"
DEFAULT_PORT = DAGSTER_UI_PORT
# How `dagster dev` starts its webserver: `python -m dagster_webserver --port ...`.
_WEBSERVER = ("-m", "dagster_webserver")


def add_dev_parser(commands: argparse._SubParsersAction) -> None:
    """The `dev` command and its options."""
    dev = commands.add_parser("dev", help="open the Dagster UI on this project's instance")
    dev.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the UI's port on {UI_HOST}, 1-65535, free and no deployment stage's or server.port (default: "
        f"{DEFAULT_PORT})",
    )
    dev.set_defaults(handler=command_dev)


def command_dev(args: argparse.Namespace) -> int:
    # From the first line on, a stop signal is recorded, never lost: one that comes while the instance is prepared
    # means `dg dev` is not started at all; later ones stop it and everything it started (lib/foreground.py).
    with StopSignals() as stop:
        check_port_range(args.port)
        return _dev(args, stop)


def check_port_range(port: int) -> None:
    """Raises ConfigError (`command line: --port = P: ...`) when `port` is outside 1-65535."""
    if not 1 <= port <= 65535:
        raise ConfigError("command line", [f"--port = {port}: expected an integer from 1 to 65535"])


def check_ui_port(port: int, environment: EnvironmentSettings, environment_file: str) -> None:
    """Raises ConfigError (`command line: --port = P: ...`) when `port` is one another server of this project binds
    (a local deployment stage's router, server.port: `environment_file` names the setting) or when something already
    listens on it on the UI's host (the webserver could not bind it and `dg dev` would run without a UI)."""
    reserved = {environment.server.port: "server.port (`mlops deploy local`)"}
    for stage in ("staging", "production"):
        stage_settings = environment.deployments.stage(stage)
        if stage_settings.target == "local":
            reserved[stage_settings.port] = f"deployments.{stage}.port (that stage's router)"
    if port in reserved:
        raise ConfigError(
            "command line",
            [f"--port = {port}: the port of {reserved[port]} in {environment_file}; choose another --port"],
        )
    from mlops_assets.lib.deploy.supervisor import port_is_free

    if not port_is_free(UI_HOST, port):
        raise ConfigError(
            "command line",
            [f"--port = {port}: port {port} on {UI_HOST} is in use{_holder(port)}; stop it or choose another --port"],
        )


class UiWatch:
    """Whether `dg dev`'s webserver can serve the UI on `port`: called with `dg dev`'s session id (at every poll of
    `run_in_foreground`), it returns None while it can, else why not (one phrase). It cannot once the webserver has
    exited, or while it has not bound the port and another program listens there (it failed to bind, and `dg dev`
    keeps its daemon and code server running without a UI)."""

    def __init__(self, port: int, host: str = UI_HOST) -> None:
        self.port = port
        self.host = host
        self.webserver: psutil.Process | None = None
        self.serving = False  # the webserver listens on the port: from then on only its exit is watched

    def __call__(self, session: int) -> str | None:
        if self.webserver is None:
            self.webserver = next((process for process in session_processes(session) if _is_webserver(process)), None)
            if self.webserver is None:
                return None  # not started yet
        if not _alive(self.webserver):
            if self.serving:
                return f"the Dagster UI stopped: its webserver (pid {self.webserver.pid}) exited"
            why = "" if _port_free(self.host, self.port) else f": {self._taken()}"
            return f"the Dagster UI could not start: its webserver (pid {self.webserver.pid}) exited{why}"
        if self.serving:
            return None
        # Connect first: a webserver that binds between the two checks is then seen listening, not misjudged.
        someone_listens = not _port_free(self.host, self.port)
        if _listens(self.webserver, self.port):
            self.serving = True
            return None
        if someone_listens:
            return f"the Dagster UI could not start: {self._taken()}"
        return None

    def _taken(self) -> str:
        return (
            f"port {self.port} on {self.host} is taken by another program{_holder(self.port)}, so the webserver "
            "cannot bind it; choose another --port"
        )


def _is_webserver(process: psutil.Process) -> bool:
    with contextlib.suppress(psutil.Error):
        arguments = process.cmdline()
        return any(tuple(arguments[i : i + 2]) == _WEBSERVER for i in range(len(arguments) - 1))
    return False


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _listens(process: psutil.Process, port: int) -> bool:
    with contextlib.suppress(psutil.Error):
        return any(
            connection.status == psutil.CONN_LISTEN and connection.laddr and connection.laddr.port == port
            for connection in process.net_connections(kind="tcp")
        )
    return False


def _port_free(host: str, port: int) -> bool:
    """Whether nothing accepts connections on `host:port` (a probe connection, as a client would)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex((host, port)) != 0


def _holder(port: int) -> str:
    """` (pid PID COMMAND LINE)` for the process listening on `port`, when this user may see it; else ""."""
    with contextlib.suppress(psutil.Error, OSError):
        for connection in psutil.net_connections(kind="tcp"):
            if connection.status == psutil.CONN_LISTEN and connection.laddr.port == port and connection.pid:
                return f" (pid {describe(psutil.Process(connection.pid))})"
    return ""


def _dev(args: argparse.Namespace, stop: StopSignals) -> int:
    # dagster is pinned exactly; these are the setting and the function behind the UI's Auto-materialize toggle.
    from dagster._daemon.asset_daemon import _PRE_SENSOR_ASSET_DAEMON_PAUSED_KEY, set_auto_materialize_paused

    from mlops_assets.housekeeping import tidy

    environment = settings.environment_name()
    environment_file = settings.environment_file(environment).relative_to(settings.PROJECT_ROOT)
    check_ui_port(args.port, settings.environment_settings(environment), str(environment_file))
    env = settings.export_environment()
    # Created here under the home's lock (not by the three processes `dagster dev` starts), and tidied.
    with settings.open_instance() as instance:
        for note in tidy(instance).notes():
            print(f"housekeeping: {note}")
        # The UI's "Auto-materialize" switch (its header and /health): automation conditions run through
        # `automation_sensor`, on by default, so a fresh instance (which reads "off") is switched on, as the toggle
        # does; a person's later choice stands.
        stored = instance.daemon_cursor_storage.get_cursor_values({_PRE_SENSOR_ASSET_DAEMON_PAUSED_KEY})
        if _PRE_SENSOR_ASSET_DAEMON_PAUSED_KEY not in stored:
            set_auto_materialize_paused(instance, False)
    # Dagster's current command line, as a user types it in the project: `dg dev` loads the code location that
    # [tool.dg] in pyproject.toml names (the one workspace.yaml names for runs started by `mlops`).
    dg_command = Path(sys.executable).parent / "dg"
    command = [str(dg_command), "dev", "--port", str(args.port)]
    # A child, not exec'd: SIGTERM (and SIGHUP) then stop it and everything it starts as Ctrl-C does, even where
    # `dg dev` alone would ignore them (started with SIGINT ignored, it ignores SIGTERM too).
    return run_in_foreground(
        command,
        {**os.environ, **env},
        settings.PROJECT_ROOT,
        stop,
        say=lambda text: print_to_stderr(f"mlops dev: {text}"),
        failure=UiWatch(args.port),
    )
