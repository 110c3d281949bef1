"""Engines for the registry database: SQLite (WAL, writers serialized by BEGIN IMMEDIATE) or PostgreSQL.

A SQLite registry file is checked before it is opened: an empty (zero-byte) file next to a history, or a file that is
not a readable SQLite database, is refused with an error naming the file and how to restore it, instead of being
silently started over (SQLite would turn an empty file into a new, empty registry).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, OperationalError

from mlops_assets.lib import postgres
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.settings_validation import ConfigError

# Concurrent writers wait this long for SQLite's write lock before failing with "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Every SQLite database file starts with these 16 bytes (https://www.sqlite.org/fileformat.html).
SQLITE_HEADER = b"SQLite format 3\x00"
BACKUP_INFIX = ".bak-"


class RegistryFileError(MLOpsError):
    """The registry database file is empty or unreadable; nothing was changed, the message says how to restore it."""


def create_registry_engine(url: str) -> Engine:
    """An engine whose transactions are safe for concurrent processes on either backend."""
    parsed = make_url(url)
    if postgres.is_postgres(url):
        # psycopg2 also for a plain postgresql:// URL (SQLAlchemy 2.1 would pick psycopg 3, which is not installed); a
        # server that does not answer fails a connection after the timeout instead of blocking it.
        url = postgres.with_psycopg2(url)
        return create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": postgres.CONNECT_TIMEOUT_S})
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        check_sqlite_path(Path(parsed.database).expanduser())
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


def check_sqlite_path(path: Path) -> None:
    """Refuse a registry file path SQLite cannot use, before anything is created: a directory, a symbolic link to a
    missing file (SQLite would create the registry wherever it points) or a folder on the way that is a file. Raises
    ConfigError naming the path and what to do."""
    where = "move it away or point the registry elsewhere (MLOPS_HOME, or the registry URL), then run again"
    if path.is_symlink() and not path.exists():
        raise ConfigError(
            str(path),
            [
                f"a symbolic link to {os.readlink(path)}, which does not exist; no registry was created there. Point "
                "the link at the registry file or remove it, then run again"
            ],
        )
    if path.is_dir():
        raise ConfigError(str(path), [f"a directory, not the registry file; {where}"])
    for folder in path.parents:
        if folder.is_dir():
            break
        if folder.exists() or folder.is_symlink():
            raise ConfigError(str(folder), [f"not a folder, so the registry {path} cannot be created in it; {where}"])


def sqlite_file(engine: Engine) -> Path | None:
    """The database file of a SQLite engine (None for PostgreSQL and in-memory databases)."""
    if engine.dialect.name != "sqlite" or engine.url.database in (None, "", ":memory:"):
        return None
    return Path(engine.url.database).expanduser().resolve()


def backups(path: Path) -> list[Path]:
    """Copies kept next to a registry file (`registry.db.bak-<UTC time>`), newest first."""
    return sorted(path.parent.glob(f"{path.name}{BACKUP_INFIX}*"), reverse=True)


def _restore_advice(path: Path) -> str:
    found = backups(path)
    if found:
        listed = ", ".join(backup.name for backup in found[:5])
        restore = f"Restore the newest backup with `cp {found[0]} {path}` (backups next to it: {listed})"
    else:
        restore = f"Restore it from a backup of this home (there is no {path.name}{BACKUP_INFIX}* copy next to it)"
    return (
        f"{restore}, then run again. To start a new, empty registry on purpose, move {path.name} away first: the "
        "versions it held are then unknown to the registry."
    )


def check_registry_file(path: Path, home_history: Sequence[str] | None) -> None:
    """Refuse a registry file that would be started over or cannot be read; a missing file is a new registry.

    `home_history` says what else the home holds (e.g. "2 bentos in the BentoML store"), [] for a home with nothing
    in it, None where the caller cannot tell. An empty (zero-byte) file is initialised only on a home known to hold
    nothing; anywhere else it is refused, since SQLite never leaves a registry it wrote empty. Raises
    RegistryFileError naming the file and how to restore it.
    """
    if not path.exists():
        return
    size = path.stat().st_size
    if size == 0:
        write_ahead_log = path.with_name(path.name + "-wal")
        if write_ahead_log.exists() and write_ahead_log.stat().st_size > 0:
            return  # the content is still in the write-ahead log; SQLite reads it from there
        evidence = list(home_history or [])
        if backups(path):
            evidence.append(f"{len(backups(path))} backup(s) of the registry")
        if home_history is not None and not evidence:
            return  # a home known to hold nothing: the empty file becomes a new registry
        if evidence:
            raise RegistryFileError(
                f"The model registry {path} is empty (0 bytes), but this home holds {', '.join(evidence)}: the "
                "registry had model versions, and opening it would start a new, empty registry and lose their "
                f"history; it was left untouched. {_restore_advice(path)}"
            )
        raise RegistryFileError(
            f"The model registry {path} is empty (0 bytes); SQLite never leaves a registry it wrote empty, so it was "
            "truncated or replaced; opening it would start a new, empty registry, so it was left untouched. If this "
            f"home never held model versions, delete the empty file. Otherwise: {_restore_advice(path)}"
        )
    # Read through SQLite only. Its locks are POSIX advisory locks, which this process loses on the file as soon as
    # it closes any descriptor of it that SQLite did not open (https://www.sqlite.org/howtocorrupt.html, 2.2): a
    # registry open elsewhere in this process (a webserver's, a daemon's) would then look closed to other processes,
    # and the last of them to close would delete the write-ahead log and its index from under it, so that it reads
    # stale or "malformed" data. The raw header is read only to describe a file that is refused anyway.
    verdict = _quick_check(path)
    if verdict == ["ok"]:
        return
    header = _header(path)
    if header != SQLITE_HEADER:
        raise RegistryFileError(
            f"The model registry {path} is not a SQLite database ({size} bytes starting {header[:8]!r}); it cannot "
            f"be read and was left untouched. {_restore_advice(path)}"
        )
    raise RegistryFileError(
        f"The model registry {path} is damaged (SQLite: {'; '.join(verdict[:3])}); it cannot be trusted and was "
        f"left untouched. {_restore_advice(path)}"
    )


def _header(path: Path) -> bytes:
    """The file's first bytes, as many as a SQLite header has (fewer for a shorter file)."""
    with path.open("rb") as handle:
        return handle.read(len(SQLITE_HEADER))


def _quick_check(path: Path) -> list[str]:
    """SQLite's `PRAGMA quick_check` of the file: ["ok"], or what it found wrong."""
    try:
        connection = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        try:
            return [row[0] for row in connection.execute("PRAGMA quick_check")]
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        return [str(error)]


def damaged(path: Path, error: DatabaseError) -> RegistryFileError | None:
    """The RegistryFileError for a SQLite error that means the file is not a usable database (None for others, such
    as a lock timeout or a refused write)."""
    if type(error.orig) is not sqlite3.DatabaseError:  # OperationalError, IntegrityError, ... are not damage
        return None
    return RegistryFileError(
        f"The model registry {path} is damaged (SQLite: {error.orig}); it cannot be trusted. {_restore_advice(path)}"
    )


@contextmanager
def opening(engine: Engine, home_history: Sequence[str] | None) -> Iterator[None]:
    """Around a registry's first use in this process (schema creation, upgrades): for a SQLite file, hold a lock file
    so concurrent processes create or upgrade it one at a time, check the file first (`check_registry_file`) and name
    the file when SQLite finds it damaged; for PostgreSQL, hold an advisory lock the same way (`_postgres_opening`).
    """
    if engine.dialect.name == "postgresql":
        with _postgres_opening(engine):
            yield
        return
    path = sqlite_file(engine)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed, also if this process dies
        check_registry_file(path, home_history)
        try:
            yield
        except DatabaseError as error:
            translated = damaged(path, error)
            if translated is None:
                raise
            raise translated from error


# The advisory lock key every process opening a registry on PostgreSQL takes (any fixed 64-bit number; this one is
# the first 8 bytes of sha256("mlops_assets registry opening")).
POSTGRES_OPENING_LOCK = 4256440678806730557


class RegistryUnreachableError(MLOpsError):
    """The registry's PostgreSQL server or database cannot be reached; the message gives PostgreSQL's reason."""


@contextmanager
def _postgres_opening(engine: Engine) -> Iterator[None]:
    """Hold a session-level advisory lock while the schema is created or upgraded: concurrent `CREATE TABLE`s or
    `CREATE OR REPLACE FUNCTION`s on one database fail ("tuple concurrently updated"). PostgreSQL releases the lock
    when the holding session ends, also if this process dies. Raises RegistryUnreachableError when no session can be
    opened."""
    try:
        connection = engine.connect()
    except OperationalError as error:
        raise RegistryUnreachableError(
            f"Cannot connect to the model registry at {engine.url.render_as_string(hide_password=True)}: "
            f"{postgres.reason(error.orig)} Check the registry's URL (the variable `registry.url_env` names in "
            "deployments/<environment>.yaml) and that the server runs and the database exists."
        ) from error
    with connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": POSTGRES_OPENING_LOCK})
        connection.commit()  # the lock belongs to the session, not to this transaction
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": POSTGRES_OPENING_LOCK})
            connection.commit()
