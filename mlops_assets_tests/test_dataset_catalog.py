"""The dataset catalogue in the registry database: names, numbered versions, the current dataset, what model versions
reference, and the schema upgrade that adds what `mlops reproduce` needs (SQLite and PostgreSQL)."""

import dataclasses
import re
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from mlops_assets.lib.registry.datasets import SAMPLE, SAMPLE_SOURCE, CatalogError, read_catalogue
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets.lib.registry.schema import REPRODUCIBILITY_COLUMNS
from mlops_assets_tests.postgres_server import PostgresServer
from mlops_assets_tests.registry_helpers import new_version

MIGRATIONS_LOGGER = "mlops_assets.lib.registry.migrations"


@pytest.fixture
def models(tmp_path: Path):
    with ModelRegistry(f"sqlite:///{tmp_path}/registry.db", "local") as registry:
        yield registry


def _record(models: ModelRegistry, name: str, data_version: str):
    return models.datasets.record_version(name, "/data", data_version, 3, {"a": 2, "b": 1}, 300, "run-x")


def test_names_are_checked_and_a_source_never_changes(models: ModelRegistry) -> None:
    catalog = models.datasets
    view, created = catalog.add("flowers", "/data/flowers", actor="ana")
    assert (view.name, view.source, view.added_by, view.latest, view.num_versions, created) == (
        "flowers",
        "/data/flowers",
        "ana",
        None,
        0,
        True,
    )
    assert catalog.add("flowers", "/data/flowers", actor="bo")[1] is False
    with pytest.raises(CatalogError) as moved:
        catalog.add("flowers", "/data/other", actor="bo")
    assert str(moved.value) == (
        "Dataset 'flowers' is already in the catalogue with source /data/flowers; a dataset's source never changes "
        "(its versions were read from it): add the new source under another name."
    )
    for name, problem in (
        ("bad name", "not a dataset name (1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit)"),
        ("current", "reserved ('current' means the current dataset, 'sample' is the bundled sample)"),
        ("sample", "reserved ('current' means the current dataset, 'sample' is the bundled sample)"),
    ):
        with pytest.raises(CatalogError) as refused:
            catalog.add(name, "/data/x", actor="ana")
        assert str(refused.value) == f"Dataset name {name!r}: {problem}."
    assert catalog.names() == [SAMPLE, "flowers"]
    assert catalog.dataset(SAMPLE).source == SAMPLE_SOURCE
    with pytest.raises(CatalogError) as unknown:
        catalog.dataset("tulips")
    assert str(unknown.value) == (
        "There is no dataset named 'tulips' in the catalogue (known: sample, flowers); add it with "
        "`mlops datasets add tulips SOURCE`, or pass a folder path."
    )


def test_versions_are_numbered_per_dataset_and_found_by_number_or_data_version(models: ModelRegistry) -> None:
    catalog = models.datasets
    catalog.add("flowers", "/data/flowers", actor="ana")
    first, created = _record(models, "flowers", "ab" * 32)
    assert (first.reference, first.num_classes, first.class_counts, created) == ("flowers@1", 2, {"a": 2, "b": 1}, True)
    again, created = _record(models, "flowers", "ab" * 32)
    assert (again.number, created) == (1, False)
    second, _ = _record(models, "flowers", "cd" * 32)
    assert second.number == 2
    assert _record(models, SAMPLE, "ef" * 32)[0].reference == "sample@1"  # numbered per dataset

    assert catalog.version("flowers", 2) == second
    assert catalog.version("flowers", "cdcdcdcd") == second
    assert catalog.dataset("flowers").latest == second
    with pytest.raises(CatalogError) as unknown:
        catalog.version("flowers", "3")
    assert str(unknown.value) == (
        "'3' is not one of the recorded versions of dataset 'flowers' (1 to 2, the latest 2 = data version "
        f"{'cd' * 6}); see `mlops datasets show flowers`."
    )
    with pytest.raises(CatalogError) as malformed:
        catalog.version("flowers", "abc")
    assert str(malformed.value) == (
        "Dataset version 'abc' of 'flowers': expected a version number (`mlops datasets show NAME`) or a data "
        "version (8 to 64 hex digits)."
    )


def test_collected_versions_are_marked_and_unmarked_when_recorded_again(models: ModelRegistry) -> None:
    catalog = models.datasets
    catalog.add("flowers", "/data/flowers", actor="ana")
    _record(models, "flowers", "ab" * 32)
    _record(models, "flowers", "cd" * 32)
    models.register(dataclasses.replace(new_version(1), data_version="cd" * 32), actor="test")
    assert catalog.referenced_data_versions() == {"cd" * 32}
    assert catalog.models_trained_on("cd" * 32) == [1]

    marked = catalog.mark_collected(catalog.referenced_data_versions())
    assert [view.reference for view in marked] == ["flowers@1"]
    assert catalog.version("flowers", 1).collected_at is not None
    assert catalog.version("flowers", 2).collected_at is None
    assert _record(models, "flowers", "ab" * 32)[0].collected_at is None


def test_the_current_dataset_is_per_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    with ModelRegistry(url, "local") as local, ModelRegistry(url, "staging") as staging:
        local.datasets.add("flowers", "/data/flowers", actor="ana")
        assert local.datasets.current() is None
        local.datasets.set_current("ana", name="flowers", version=2)
        staging.datasets.set_current("bo", path="/scratch/quick")
        assert str(local.datasets.current()) == "flowers@2"
        assert str(staging.datasets.current()) == "the folder /scratch/quick"
        local.datasets.set_current("ana", name="flowers")
        assert (local.datasets.current().version, local.datasets.current().chosen_by) == (None, "ana")
        with pytest.raises(CatalogError, match="no dataset named 'tulips'"):
            local.datasets.set_current("ana", name="tulips")
        assert str(local.datasets.current()) == "flowers"


def test_the_database_refuses_to_delete_datasets_or_versions_or_move_a_source(models: ModelRegistry) -> None:
    models.datasets.add("flowers", "/data/flowers", actor="ana")
    _record(models, "flowers", "ab" * 32)
    for statement, operation, table in (
        ("DELETE FROM datasets", "DELETE", "datasets"),
        ("UPDATE datasets SET source = '/elsewhere'", "UPDATE", "datasets"),
        ("DELETE FROM dataset_versions", "DELETE", "dataset_versions"),
    ):
        expected = f"the model registry never deletes or rewrites history ({operation} on {table})"
        with pytest.raises(IntegrityError, match=re.escape(expected)), models.engine.begin() as connection:
            connection.execute(text(statement))
    assert models.datasets.dataset("flowers").num_versions == 1


def test_the_launchpad_reads_the_catalogue_without_creating_a_registry(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    datasets, current = read_catalogue(url, "local")
    assert ([view.name for view in datasets], current) == ([SAMPLE], None)
    assert not (tmp_path / "registry.db").exists()
    with ModelRegistry(url, "local") as models:
        models.datasets.add("flowers", "/data/flowers", actor="ana")
        _record(models, "flowers", "ab" * 32)
        models.datasets.set_current("ana", name="flowers")
    datasets, current = read_catalogue(url, "local")
    assert [(view.name, view.latest.reference if view.latest else None) for view in datasets] == [
        (SAMPLE, None),
        ("flowers", "flowers@1"),
    ]
    assert str(current) == "flowers"


def _columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        names = [row[1] for row in connection.execute("PRAGMA table_info(model_versions)")]
    connection.close()
    return names


def test_a_registry_from_before_the_reproducibility_columns_gets_them_after_a_backup(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "registry.db"
    with ModelRegistry(f"sqlite:///{path}", "local") as models:
        models.register(new_version(1), actor="test")
        with models.engine.begin() as connection:
            for name in REPRODUCIBILITY_COLUMNS:
                connection.exec_driver_sql(f"ALTER TABLE model_versions DROP COLUMN {name}")
    assert not set(REPRODUCIBILITY_COLUMNS) & set(_columns(path))

    with caplog.at_level("WARNING", logger=MIGRATIONS_LOGGER), ModelRegistry(f"sqlite:///{path}", "local") as models:
        backup = models.schema_backup
        assert _columns(path)[-len(REPRODUCIBILITY_COLUMNS) :] == list(REPRODUCIBILITY_COLUMNS)
        assert (models.version(1).dataset_name, models.version(1).library_versions) == (None, None)
        recorded = dataclasses.replace(
            new_version(2),
            dataset_name="flowers",
            dataset_version=3,
            dataset_source="/data/flowers",
            library_versions={"torch": "2.13.0"},
            training_hardware="cpu: x86_64",
            pipeline_config={"validated_images": {"max_side": 32}},
        )
        models.register(recorded, actor="test")
        view = models.version(2)
        assert (view.dataset_reference, view.library_versions, view.pipeline_config) == (
            "flowers@3",
            {"torch": "2.13.0"},
            {"validated_images": {"max_side": 32}},
        )
    assert caplog.messages == [
        f"Upgrading the model registry {path} to the current schema (new columns "
        f"{', '.join(REPRODUCIBILITY_COLUMNS)}); the database as it was is kept at {backup}."
    ]
    assert not set(REPRODUCIBILITY_COLUMNS) & set(_columns(backup))


def test_the_catalogue_and_the_new_columns_on_postgresql(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = postgres_server.new_database("catalogue")
    with ModelRegistry(url, "staging") as models:
        models.register(new_version(1), actor="test")
        with models.engine.begin() as connection:
            for name in REPRODUCIBILITY_COLUMNS:
                connection.exec_driver_sql(f"ALTER TABLE model_versions DROP COLUMN {name}")
    with caplog.at_level("WARNING", logger=MIGRATIONS_LOGGER), ModelRegistry(url, "staging") as models:
        assert models.schema_backup is None
        models.register(dataclasses.replace(new_version(2), dataset_name="flowers", dataset_version=1), actor="test")
        assert models.version(2).dataset_reference == "flowers@1"
        models.datasets.add("flowers", "gs://bucket/flowers", actor="ana")
        assert _record(models, "flowers", "ab" * 32)[0].reference == "flowers@1"
        models.datasets.set_current("ana", name="flowers", version=1)
        assert str(models.datasets.current()) == "flowers@1"
        expected = "the model registry never deletes or rewrites history (DELETE on dataset_versions)"
        with pytest.raises(DBAPIError, match=re.escape(expected)), models.engine.begin() as connection:
            connection.execute(text("DELETE FROM dataset_versions"))
    assert len(caplog.messages) == 1
    assert f"(new columns {', '.join(REPRODUCIBILITY_COLUMNS)}) in one transaction" in caplog.messages[0]
    datasets, current = read_catalogue(url, "staging")
    assert ([view.name for view in datasets], str(current)) == ([SAMPLE, "flowers"], "flowers@1")
