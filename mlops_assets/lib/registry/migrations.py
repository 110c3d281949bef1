"""Upgrades for registry databases written by earlier releases: idempotent, run whenever a registry is opened.

Before a SQLite registry is changed, a copy of it as it was is written next to it (`registry.db.bak-<UTC time>`). A
PostgreSQL registry is changed in place, in one transaction, with a warning that backups are the operator's (pg_dump).
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, MetaData, inspect
from sqlalchemy.schema import CreateTable

from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.registry.database import BACKUP_INFIX, sqlite_file
from mlops_assets.lib.registry.schema import REPRODUCIBILITY_COLUMNS, ModelVersion, sqlite_guard_statements

_REBUILT = "model_versions_rebuilt"
log = logging.getLogger(__name__)


def upgrade_schema(engine: Engine) -> Path | None:
    """Bring an existing registry to the current schema; a current one is left as it is. Returns the backup written
    before a SQLite registry was changed (None when nothing changed, and for PostgreSQL).

    The steps, each idempotent: `model_versions.git_dirty` became nullable (NULL = git could not tell), and the
    reproducibility columns (`schema.REPRODUCIBILITY_COLUMNS`: dataset name, version and source, library versions,
    hardware, pipeline config) were added, all nullable. A column is added with a plain `ALTER TABLE ... ADD COLUMN`
    on both databases. PostgreSQL changes in place, in one transaction (back it up with the database's own tools, e.g.
    pg_dump); SQLite cannot make a column nullable, so the file is first copied to `<file>.bak-<UTC time>`, then the
    columns are added and the table is rebuilt, each in one transaction (its rows, ids, references and delete/update
    guards are kept). New tables (the dataset catalogue) are created by `create_all` and need no step here.
    """
    missing = _missing_columns(engine)
    dirty_nullable = _git_dirty_nullable(engine)
    if dirty_nullable and not missing:
        return None
    changes = ", ".join(
        ([] if dirty_nullable else ["model_versions.git_dirty may be unknown"])
        + ([f"new columns {', '.join(missing)}"] if missing else [])
    )
    path = sqlite_file(engine)
    if engine.dialect.name != "sqlite":
        log.warning(
            "Upgrading the model registry %s to the current schema (%s) in one transaction. mlops keeps no copy of a "
            "PostgreSQL registry: back it up with `pg_dump` before each upgrade of mlops (README, Backups).",
            engine.url.render_as_string(hide_password=True),
            changes,
        )
        with engine.begin() as connection:
            if not dirty_nullable:
                connection.exec_driver_sql("ALTER TABLE model_versions ALTER COLUMN git_dirty DROP NOT NULL")
            _add_columns(connection, missing)
        return None
    backup = backup_sqlite(path) if path is not None else None
    if backup is not None:
        log.warning(
            "Upgrading the model registry %s to the current schema (%s); the database as it was is kept at %s.",
            path,
            changes,
            backup,
        )
    if missing:
        # First: the rebuild below copies every column of the current schema from the old table.
        with engine.begin() as connection:
            _add_columns(connection, missing)
    if not dirty_nullable:
        _rebuild_sqlite_model_versions(engine)
    return backup


def _missing_columns(engine: Engine) -> list[str]:
    present = {column["name"] for column in inspect(engine).get_columns("model_versions")}
    return [name for name in REPRODUCIBILITY_COLUMNS if name not in present]


def _add_columns(connection: Connection, names: list[str]) -> None:
    """`ALTER TABLE model_versions ADD COLUMN` for each of `names` still absent (another process may have added it
    while this one waited); the types are the schema's, compiled for the connection's database."""
    present = {column["name"] for column in inspect(connection).get_columns("model_versions")}
    table = ModelVersion.__table__
    for name in names:
        if name not in present:
            column_type = table.columns[name].type.compile(dialect=connection.dialect)
            connection.exec_driver_sql(f"ALTER TABLE model_versions ADD COLUMN {name} {column_type}")


def backup_sqlite(path: Path) -> Path:
    """A consistent copy of a SQLite database (committed content, the write-ahead log's included) next to it, named
    `<file>.bak-<UTC time>`; returns its path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    backup = path.with_name(f"{path.name}{BACKUP_INFIX}{stamp}")
    source = sqlite3.connect(path)
    try:
        target = sqlite3.connect(backup)
        try:
            source.backup(target)  # SQLite's online backup: a snapshot even while other processes read
        finally:
            target.close()
    finally:
        source.close()
    return backup


def _git_dirty_nullable(engine: Engine) -> bool:
    columns = {column["name"]: column for column in inspect(engine).get_columns("model_versions")}
    return bool(columns["git_dirty"]["nullable"])


def _sqlite_git_dirty_not_null(raw: sqlite3.Connection) -> bool:
    return any(row[1] == "git_dirty" and row[3] for row in raw.execute("PRAGMA table_info(model_versions)"))


def _rebuild_sqlite_model_versions(engine: Engine) -> None:
    """SQLite's documented table rebuild: create the new table, copy, drop the old one, rename, re-add triggers."""
    table = ModelVersion.__table__
    create = str(CreateTable(table.to_metadata(MetaData(), name=_REBUILT)).compile(dialect=engine.dialect))
    columns = ", ".join(column.name for column in table.columns)
    with engine.connect() as connection:
        # The raw connection is in autocommit mode (see database.py), so the transaction below is ours to open.
        raw = connection.connection.dbapi_connection
        # foreign_keys can only change outside a transaction. Off, dropping the old table leaves the rows that
        # reference it alone; they reference the rebuilt table by name once it is renamed.
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            raw.execute("BEGIN IMMEDIATE")
            try:
                if _sqlite_git_dirty_not_null(raw):  # another process may have upgraded it while we waited
                    raw.execute(create)
                    raw.execute(f"INSERT INTO {_REBUILT} ({columns}) SELECT {columns} FROM model_versions")
                    raw.execute("DROP TABLE model_versions")
                    raw.execute(f"ALTER TABLE {_REBUILT} RENAME TO model_versions")
                    for statement in sqlite_guard_statements("model_versions"):
                        raw.execute(statement)
                    broken = raw.execute("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise MLOpsError(
                            f"Upgrading the registry would break {len(broken)} reference(s) ({broken[:3]}); "
                            "nothing was changed. Restore registry.db from a backup or report this."
                        )
                raw.execute("COMMIT")
            except BaseException:
                raw.execute("ROLLBACK")
                raise
        finally:
            raw.execute("PRAGMA foreign_keys=ON")
