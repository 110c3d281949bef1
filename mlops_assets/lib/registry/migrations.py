"""Upgrades for registry databases written by earlier releases: idempotent, run whenever a registry is opened."""

from __future__ import annotations

import sqlite3

from sqlalchemy import Engine, MetaData, inspect
from sqlalchemy.schema import CreateTable

from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.registry.schema import ModelVersion, sqlite_guard_statements

_REBUILT = "model_versions_rebuilt"


def upgrade_schema(engine: Engine) -> None:
    """Bring an existing registry to the current schema; a current one is left as it is.

    Today's one step: `model_versions.git_dirty` became nullable (NULL = git could not tell). PostgreSQL drops the
    NOT NULL in place; SQLite cannot alter a column, so the table is rebuilt in one transaction (its rows, ids,
    references and delete/update guards are kept).
    """
    if _git_dirty_nullable(engine):
        return
    if engine.dialect.name == "sqlite":
        _rebuild_sqlite_model_versions(engine)
    else:
        with engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE model_versions ALTER COLUMN git_dirty DROP NOT NULL")


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
