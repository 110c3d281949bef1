"""A registry.db written before `git_dirty` became nullable (and before the reproducibility columns) keeps working:
upgraded in place, nothing lost."""

import dataclasses
import re
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets.lib.registry.schema import REPRODUCIBILITY_COLUMNS
from mlops_assets_tests.registry_helpers import new_version

OLD_REGISTRY = Path(__file__).parent / "data" / "registry_git_dirty_not_null.sql"
MIGRATIONS_LOGGER = "mlops_assets.lib.registry.migrations"
TABLES = ("model_versions", "version_states", "gate_decisions", "audit_log", "registry_environments")


def _old_registry(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        connection.executescript(OLD_REGISTRY.read_text())
    connection.close()
    return f"sqlite:///{path}"


def _rows(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as connection:
        rows = {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in TABLES}
    connection.close()
    return rows


def _with_new_columns(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """`rows` as they read after the upgrade: model_versions gained the reproducibility columns, NULL in old rows."""
    padding = (None,) * len(REPRODUCIBILITY_COLUMNS)
    return {**rows, "model_versions": [row + padding for row in rows["model_versions"]]}


def _git_dirty_not_null(path: Path) -> int:
    with sqlite3.connect(path) as connection:
        (flag,) = [row[3] for row in connection.execute("PRAGMA table_info(model_versions)") if row[1] == "git_dirty"]
    connection.close()
    return flag


def test_an_old_registry_is_upgraded_keeping_every_row_reference_and_guard(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    url = _old_registry(path)
    before = _rows(path)
    assert _git_dirty_not_null(path) == 1

    with ModelRegistry(url, "local") as models:
        assert _git_dirty_not_null(path) == 0
        assert _rows(path) == _with_new_columns(before)
        assert (models.production().number, models.version(1).git_dirty) == (1, False)
        unknown = dataclasses.replace(new_version(2), git_commit="unknown", git_dirty=None)
        assert models.register(unknown, actor="test").version.number == 2
        assert (models.version(2).git_commit, models.version(2).git_dirty) == ("unknown", None)
        # The rebuilt table is still append-only, and still referenced by the other tables.
        for statement in ("DELETE FROM model_versions", "UPDATE model_versions SET git_dirty = 1"):
            with pytest.raises(IntegrityError, match="never deletes or rewrites history"), models.engine.begin() as c:
                c.execute(text(statement))
        with pytest.raises(IntegrityError, match="FOREIGN KEY constraint failed"), models.engine.begin() as c:
            c.execute(text("INSERT INTO version_states VALUES ('local', 99, 'candidate', NULL, '2026-01-01')"))
        assert models.state_summary() == {"production": [1], "candidate": [2]}

    # Opening it again changes nothing: the upgrade runs once.
    upgraded = _rows(path)
    with ModelRegistry(url, "local") as again:
        assert _rows(path) == upgraded
        assert again.schema_backup is None
    assert len(list(tmp_path.glob("registry.db.bak-*"))) == 1


def test_the_registry_is_backed_up_before_its_schema_changes_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "registry.db"
    url = _old_registry(path)
    before = _rows(path)

    with caplog.at_level("WARNING", logger=MIGRATIONS_LOGGER), ModelRegistry(url, "local") as models:
        backup = models.schema_backup

    assert [backup] == list(tmp_path.glob("registry.db.bak-*"))
    assert re.fullmatch(r"registry\.db\.bak-\d{8}T\d{6}\.\d{6}Z", backup.name)
    # The copy is the database as it was: every row, and the old NOT NULL column.
    assert (_rows(backup), _git_dirty_not_null(backup)) == (before, 1)
    assert _git_dirty_not_null(path) == 0
    assert caplog.messages == [
        f"Upgrading the model registry {path} to the current schema (model_versions.git_dirty may be unknown, new "
        f"columns {', '.join(REPRODUCIBILITY_COLUMNS)}); the database as it was is kept at {backup}."
    ]
