"""The Dagster instance and the model registry on PostgreSQL (staging, production), against a real server: the
instance config each environment gets, an instance whose runs and events live on the server, and a server or
database that cannot be reached refused in one `error:` line naming the variable to fix, before any run exists."""

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml

from mlops_assets import settings
from mlops_assets.cli import BAD_SETTINGS, main
from mlops_assets.environments import storage_resources
from mlops_assets.instance_config import instance_config, instance_yaml
from mlops_assets.lib.environment_settings import EnvironmentSettings
from mlops_assets.lib.errors import DEBUG_VARIABLE
from mlops_assets_tests.postgres_server import PostgresServer, free_port

MLOPS = str(Path(sys.executable).parent / "mlops")
INSTANCE_VARIABLE = "MLOPS_DAGSTER_POSTGRES_URL"
REGISTRY_VARIABLE = "MLOPS_REGISTRY_URL"
# Staging keeps its storage on GCS; the instance config names its compute-log bucket, so the variable must be set.
# Nothing here reaches GCS: the PostgreSQL checks come first.
STORAGE = {"MLOPS_STORAGE_URL": "gs://mlops-test/staging"}
URL_FORM = "postgresql+psycopg2://USER:PASSWORD@HOST:5432/DATABASE"
REFUSED = (
    'connection to server at "127.0.0.1", port {port} failed: Connection refused. Is the server running on that host '
    "and accepting TCP/IP connections?"
)
FIX = "Point it at a running PostgreSQL server and an existing database."
# The resolver's own words for an unknown host differ between machines (no such name, no DNS at all).
UNKNOWN_HOST = 'could not translate host name "db.invalid" to address: '


def _database_url(server: PostgresServer, name: str, password: str = "") -> str:
    """`name` on the test server with the psycopg2 driver named (and a password the server does not need)."""
    secret = f":{password}" if password else ""
    return f"postgresql+psycopg2://postgres{secret}@127.0.0.1:{server.port}/{name}"


def _tables(url: str) -> list[str]:
    connection = psycopg2.connect(url.replace("+psycopg2", ""), connect_timeout=10)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
            return [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()


def _environment(name: str, database: str) -> EnvironmentSettings:
    return EnvironmentSettings.model_validate(
        {"environment": name, "server": {"host": "127.0.0.1", "port": 3031}, "dagster": {"database": database}}
    )


def test_local_keeps_sqlite_and_staging_and_production_name_the_variable_not_the_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert instance_config(settings.environment_settings("local")) == {"telemetry": {"enabled": False}}
    local_yaml = settings.write_instance_config("local").read_text()
    assert "storage" not in yaml.safe_load(local_yaml)  # Dagster's default: SQLite under DAGSTER_HOME

    monkeypatch.setenv(INSTANCE_VARIABLE, "postgresql+psycopg2://mlops:s3cret@db.example:5432/dagster")
    for name, value in STORAGE.items():
        monkeypatch.setenv(name, value)
    for environment in ("staging", "production"):
        path = settings.write_instance_config(environment)
        assert path == settings.mlops_home() / f"dagster-{environment}" / "dagster.yaml"
        text = path.read_text()
        assert yaml.safe_load(text)["storage"] == {"postgres": {"postgres_url": {"env": INSTANCE_VARIABLE}}}
        assert "s3cret" not in text and "db.example" not in text  # Dagster reads the URL when the instance starts
        assert text.startswith(f"# Written by mlops from deployments/{environment}.yaml at every start;")
        registry = storage_resources(environment)["registry"]
        assert (registry.environment, registry.url) == (environment, dg.EnvVar(REGISTRY_VARIABLE))


def test_an_instance_on_postgresql_keeps_runs_and_events_on_the_server(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _database_url(postgres_server, postgres_server.new_database("instance").rsplit("/", 1)[1])
    monkeypatch.setenv(INSTANCE_VARIABLE, url)
    home = tmp_path / "dagster-staging"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(_environment("staging", "postgresql")))
    settings.check_instance_database("staging")  # reachable: no error

    @dg.asset
    def numbers() -> list[int]:
        return [1, 2, 3]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        result = dg.materialize([numbers], instance=instance, resources={"io_manager": dg.mem_io_manager})
        assert result.success
    # A second instance (another process, another machine) sees the same run and materialization on the server.
    with dg.DagsterInstance.from_config(str(home)) as again:
        assert [record.dagster_run.run_id for record in again.get_run_records()] == [result.run_id]
        event = again.get_latest_materialization_event(dg.AssetKey("numbers"))
        assert event is not None and event.run_id == result.run_id
    assert {"runs", "event_logs", "instigators"} <= set(_tables(url))
    # No run, event or schedule database on this machine (only the compute logs of this environment without GCS).
    assert not list(home.rglob("*.db"))


@dataclass(frozen=True)
class Unreachable:
    """One bad PostgreSQL setting: the variable, its value, and the reason expected after the variable and URL."""

    name: str
    variable: str
    value: str  # {port}: a port nothing listens on; {server}: the test server's port
    reason: str  # the problem as the error line gives it, after the variable and the URL without password
    environment: str = "staging"


def _instance_source(environment: str) -> str:
    return f"environment variable {INSTANCE_VARIABLE} (the {environment} Dagster instance)"


def _registry_source(environment: str) -> str:
    return f"environment variable {REGISTRY_VARIABLE} (the {environment} model registry)"


UNREACHABLE = [
    Unreachable("instance unset", INSTANCE_VARIABLE, "", f"not set; set it to {URL_FORM}"),
    Unreachable(
        "instance without driver",
        INSTANCE_VARIABLE,
        "postgresql://mlops:pw@127.0.0.1:{server}/dagster",
        "'postgresql://mlops:***@127.0.0.1:{server}/dagster': name the driver: "
        f"{URL_FORM} (SQLAlchemy reads a plain postgresql:// URL as psycopg 3, which is not installed; "
        "dagster-postgres runs on psycopg2)",
    ),
    Unreachable(
        "instance refused",
        INSTANCE_VARIABLE,
        "postgresql+psycopg2://mlops:pw@127.0.0.1:{port}/dagster",
        f"'postgresql+psycopg2://mlops:***@127.0.0.1:{{port}}/dagster': cannot connect: {REFUSED} {FIX}",
    ),
    Unreachable(
        "instance wrong database",
        INSTANCE_VARIABLE,
        "postgresql+psycopg2://postgres@127.0.0.1:{server}/no_such_dagster",
        "'postgresql+psycopg2://postgres@127.0.0.1:{server}/no_such_dagster': cannot connect: connection to server "
        'at "127.0.0.1", port {server} failed: database "no_such_dagster" does not exist. ' + FIX,
    ),
    Unreachable(
        "instance wrong host",
        INSTANCE_VARIABLE,
        "postgresql+psycopg2://mlops:pw@db.invalid:5432/dagster",
        f"'postgresql+psycopg2://mlops:***@db.invalid:5432/dagster': cannot connect: {UNKNOWN_HOST}",
    ),
    Unreachable(
        "production instance refused",
        INSTANCE_VARIABLE,
        "postgresql+psycopg2://mlops:pw@127.0.0.1:{port}/dagster",
        f"'postgresql+psycopg2://mlops:***@127.0.0.1:{{port}}/dagster': cannot connect: {REFUSED} {FIX}",
        environment="production",
    ),
    Unreachable("registry unset", REGISTRY_VARIABLE, "", f"not set; set it to {URL_FORM}"),
    Unreachable(
        "registry not postgresql",
        REGISTRY_VARIABLE,
        "sqlite:///registry.db",
        f"'sqlite:///registry.db': not a PostgreSQL URL (sqlite://...); expected {URL_FORM}",
    ),
    Unreachable(
        "registry refused",
        REGISTRY_VARIABLE,
        "postgresql://mlops:pw@127.0.0.1:{port}/registry",
        f"'postgresql://mlops:***@127.0.0.1:{{port}}/registry': cannot connect: {REFUSED} {FIX}",
    ),
    Unreachable(
        "registry wrong database",
        REGISTRY_VARIABLE,
        "postgresql://postgres@127.0.0.1:{server}/no_such_registry",
        "'postgresql://postgres@127.0.0.1:{server}/no_such_registry': cannot connect: connection to server at "
        '"127.0.0.1", port {server} failed: database "no_such_registry" does not exist. ' + FIX,
    ),
    Unreachable(
        "registry unknown user",
        REGISTRY_VARIABLE,
        "postgresql://nobody:pw@127.0.0.1:{server}/postgres",
        "'postgresql://nobody:***@127.0.0.1:{server}/postgres': cannot connect: connection to server at "
        '"127.0.0.1", port {server} failed: role "nobody" does not exist. ' + FIX,
    ),
    Unreachable(
        "registry wrong host",
        REGISTRY_VARIABLE,
        "postgresql://mlops:pw@db.invalid:5432/registry",
        f"'postgresql://mlops:***@db.invalid:5432/registry': cannot connect: {UNKNOWN_HOST}",
    ),
]


@pytest.fixture
def reachable(postgres_server: PostgresServer) -> dict[str, str]:
    """A reachable instance database and registry database, each new and empty."""
    return {
        INSTANCE_VARIABLE: _database_url(postgres_server, postgres_server.new_database("dagster").rsplit("/", 1)[1]),
        REGISTRY_VARIABLE: postgres_server.new_database("registry"),
    }


def _bad_settings(case: Unreachable, server: PostgresServer, reachable: dict[str, str]) -> tuple[dict, str]:
    """The variables of a run with the case's bad value (the other database reachable), and the expected line's
    start (the whole line, except after an unknown host, where the resolver's words follow)."""
    port = free_port()
    value = case.value.format(port=port, server=server.port)
    variables = {**STORAGE, **reachable, "MLOPS_ENV": case.environment, case.variable: value}
    source = _instance_source if case.variable == INSTANCE_VARIABLE else _registry_source
    expected = f"error: {source(case.environment)}: {case.reason.format(port=port, server=server.port)}"
    return variables, expected


def _assert_one_line(lines: list[str], expected: str) -> None:
    assert len(lines) == 1, lines
    if expected.endswith(UNKNOWN_HOST):
        assert lines[0].startswith(expected) and lines[0].endswith(f". {FIX}"), lines[0]
        assert ";" not in lines[0][len(expected) :]  # one problem, no traceback fragments
    else:
        assert lines[0] == expected


@pytest.mark.parametrize("case", UNREACHABLE, ids=[case.name for case in UNREACHABLE])
def test_an_unreachable_database_is_one_error_line_naming_the_variable_before_anything_runs(
    case: Unreachable,
    postgres_server: PostgresServer,
    reachable: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    variables, expected = _bad_settings(case, postgres_server, reachable)
    # What `mlops run` sets in this process (its home's variables, the dataset) is undone after the test.
    for name in ("DAGSTER_HOME", "BENTOML_HOME", "BENTOML_DO_NOT_TRACK", "MLOPS_DATASET", DEBUG_VARIABLE):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    for name, value in variables.items():
        if value:
            monkeypatch.setenv(name, value)
        else:
            monkeypatch.delenv(name, raising=False)

    code = main(["run", "--dataset", "gs://mlops-test/datasets/digits"])

    captured = capsys.readouterr()
    assert (code, captured.out) == (BAD_SETTINGS, "")
    _assert_one_line(captured.err.splitlines(), expected)
    # Nothing ran: no Dagster tables (no instance was opened, so no run exists) and no registry tables.
    assert _tables(reachable[INSTANCE_VARIABLE]) == []
    assert _tables(reachable[REGISTRY_VARIABLE]) == []


def _mlops(args: list[str], variables: dict[str, str], home: Path, timeout_s: float = 300) -> tuple[int, str, str]:
    """A real `mlops` process in its own process group (stopped with the group if it outlives `timeout_s`)."""
    env = {key: value for key, value in os.environ.items() if key not in ("DAGSTER_HOME", "BENTOML_HOME")}
    env = {key: value for key, value in env.items() if key not in (INSTANCE_VARIABLE, REGISTRY_VARIABLE)}
    process = subprocess.Popen(
        [MLOPS, *args],
        env={**env, **{k: v for k, v in variables.items() if v}, "MLOPS_HOME": str(home), DEBUG_VARIABLE: ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout_s)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return process.returncode, out, err


REAL_PROCESS_CASES = {case.name: case for case in UNREACHABLE}


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (["run", "--dataset", "gs://mlops-test/datasets/digits"], "instance refused"),
        (["run", "--dataset", "gs://mlops-test/datasets/digits"], "registry wrong database"),
        (["models", "list"], "registry refused"),
        # `mlops dev` checks the instance before it starts the UI (which would fail later, in each of its processes).
        (["dev", "--port", "1"], "instance wrong database"),
    ],
    ids=["run instance", "run registry", "models registry", "dev instance"],
)
def test_the_real_command_prints_one_line_and_no_traceback(
    args: list[str], name: str, postgres_server: PostgresServer, reachable: dict[str, str], tmp_path: Path
) -> None:
    variables, expected = _bad_settings(REAL_PROCESS_CASES[name], postgres_server, reachable)
    code, out, err = _mlops(args, variables, tmp_path / "home")
    assert (code, out) == (BAD_SETTINGS, "")
    _assert_one_line(err.splitlines(), expected)
    assert _tables(reachable[INSTANCE_VARIABLE]) == [] and _tables(reachable[REGISTRY_VARIABLE]) == []
