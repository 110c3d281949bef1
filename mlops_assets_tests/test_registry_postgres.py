"""The model registry on a real PostgreSQL server: guards, the schema upgrade, concurrent first openings, and a server
or database that cannot be reached."""

import dataclasses
import multiprocessing
import re

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import DBAPIError

from mlops_assets.lib import postgres
from mlops_assets.lib.registry.database import RegistryUnreachableError
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets_tests.postgres_server import PostgresServer, free_port
from mlops_assets_tests.registry_helpers import new_version, registered

MIGRATIONS_LOGGER = "mlops_assets.lib.registry.migrations"
OPENERS = 4


def _git_dirty_nullable(url: str) -> bool:
    engine = create_engine(postgres.with_psycopg2(url))
    try:
        (column,) = [c for c in inspect(engine).get_columns("model_versions") if c["name"] == "git_dirty"]
        return column["nullable"]
    finally:
        engine.dispose()


def test_the_database_refuses_to_delete_or_rewrite_history(postgres_server: PostgresServer) -> None:
    url = postgres_server.new_database("guards")
    with ModelRegistry(url, "staging") as models:
        number = registered(models, 1)
        models.promote(number, "production", actor="test", reason="first")
        for statement, operation, table in (
            ("DELETE FROM model_versions", "DELETE", "model_versions"),
            ("UPDATE model_versions SET git_dirty = true", "UPDATE", "model_versions"),
            ("DELETE FROM audit_log", "DELETE", "audit_log"),
        ):
            expected = f"the model registry never deletes or rewrites history ({operation} on {table})"
            with pytest.raises(DBAPIError, match=re.escape(expected)), models.engine.begin() as connection:
                connection.execute(text(statement))
        assert models.state_summary() == {"production": [number]}
        assert [entry.action for entry in models.history()] == ["register", "promote"]


def test_an_old_registry_on_postgresql_is_upgraded_in_place_with_backup_advice(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = postgres_server.new_database("upgrade")
    with ModelRegistry(url, "staging") as models:
        number = registered(models, 1)
        models.promote(number, "production", actor="test", reason="first")
        before = (models.versions(), models.history())
        # The schema an earlier release wrote: git_dirty NOT NULL.
        with models.engine.begin() as connection:
            connection.execute(text("ALTER TABLE model_versions ALTER COLUMN git_dirty SET NOT NULL"))
    assert _git_dirty_nullable(url) is False

    with caplog.at_level("WARNING", logger=MIGRATIONS_LOGGER), ModelRegistry(url, "staging") as models:
        assert _git_dirty_nullable(url) is True
        assert models.schema_backup is None  # nothing is copied on PostgreSQL: the operator's pg_dump is the backup
        assert (models.versions(), models.history()) == before
        unknown = dataclasses.replace(new_version(2), git_commit="unknown", git_dirty=None)
        assert models.register(unknown, actor="test").version.number == 2
        assert (models.version(2).git_commit, models.version(2).git_dirty) == ("unknown", None)
        assert models.state_summary() == {"production": [1], "candidate": [2]}
    shown = f"postgresql+psycopg2://postgres@127.0.0.1:{postgres_server.port}/{url.rsplit('/', 1)[1]}"
    assert caplog.messages == [
        f"Upgrading the model registry {shown} to the current schema (model_versions.git_dirty may be unknown) in "
        "one transaction. mlops keeps no copy of a PostgreSQL registry: back it up with `pg_dump` before each "
        "upgrade of mlops (README, Backups)."
    ]

    caplog.clear()
    with caplog.at_level("WARNING", logger=MIGRATIONS_LOGGER), ModelRegistry(url, "staging") as again:
        assert again.state_summary() == {"production": [1], "candidate": [2]}
    assert caplog.messages == []  # the upgrade runs once


def _open_at_once(url: str, barrier, results) -> None:
    barrier.wait()
    try:
        with ModelRegistry(url, "staging") as models:
            results.put(("opened", models.state_summary()))
    except Exception as error:  # reported to the test, which names it
        results.put(("failed", f"{type(error).__name__}: {error}"))


def test_processes_opening_a_new_registry_at_once_all_succeed(postgres_server: PostgresServer) -> None:
    """The first opening creates tables, the guard function and triggers; several processes doing it at once take
    turns instead of failing on each other's half-created schema."""
    url = postgres_server.new_database("openers")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(OPENERS), context.Queue()
    workers = [context.Process(target=_open_at_once, args=(url, barrier, results)) for _ in range(OPENERS)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    outcomes = [results.get(timeout=5) for _ in workers]
    assert outcomes == [("opened", {})] * OPENERS
    with ModelRegistry(url, "staging") as models:
        assert models.register(new_version(1), actor="test").version.number == 1


def test_a_refused_connection_is_named_with_the_server_and_what_to_check() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(RegistryUnreachableError) as raised:
        ModelRegistry(f"postgresql://mlops:secret@127.0.0.1:{port}/registry", "staging")
    assert str(raised.value) == (
        f"Cannot connect to the model registry at postgresql+psycopg2://mlops:***@127.0.0.1:{port}/registry: "
        f'connection to server at "127.0.0.1", port {port} failed: Connection refused. Is the server running on that '
        "host and accepting TCP/IP connections? Check the registry's URL (the variable `registry.url_env` names in "
        "deployments/<environment>.yaml) and that the server runs and the database exists."
    )


def test_a_missing_database_is_named(postgres_server: PostgresServer) -> None:
    with pytest.raises(RegistryUnreachableError, match=r'failed: database "no_such_registry" does not exist\. Check'):
        ModelRegistry(postgres_server.url("no_such_registry"), "staging")
