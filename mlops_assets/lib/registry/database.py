"""Engines for the registry database: SQLite (WAL, writers serialized by BEGIN IMMEDIATE) or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

# Concurrent writers wait this long for SQLite's write lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000


def create_registry_engine(url: str) -> Engine:
    """An engine whose transactions are safe for concurrent processes on either backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself instead of the driver's deferred, lock-free BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        # Take the write lock at the start: a read-then-write transaction can never be overtaken by another writer.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
