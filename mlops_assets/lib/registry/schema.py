"""Tables of the model registry (SQLAlchemy 2.x, portable between SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Re-exported: the registry's code names the states from here.
from mlops_assets.lib.registry.statuses import ARCHIVED, CANDIDATE, DISABLED, PRODUCTION, STAGING, STATUSES  # noqa: F401


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ModelVersion(Base):
    """One registered model and everything needed to rebuild it; immutable once written."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_name", "number", name="uq_model_versions_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(Integer)
    model_tag: Mapped[str] = mapped_column(String(300), unique=True)
    bento_tag: Mapped[str] = mapped_column(String(300))
    package_path: Mapped[str] = mapped_column(Text)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    plugin: Mapped[str] = mapped_column(String(200))
    labels: Mapped[list] = mapped_column(JSON)
    data_version: Mapped[str] = mapped_column(String(64))
    dataset_size: Mapped[int] = mapped_column(Integer)
    code_versions: Mapped[dict] = mapped_column(JSON)
    git_commit: Mapped[str] = mapped_column(String(64))
    # NULL when git could not tell (no git executable, not a checkout): unknown is never recorded as clean.
    git_dirty: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    hyperparameters: Mapped[dict] = mapped_column(JSON)
    metrics: Mapped[dict] = mapped_column(JSON)
    training_seconds: Mapped[float] = mapped_column(Float)
    training_device: Mapped[str] = mapped_column(String(50))
    parent_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dagster_run_id: Mapped[str] = mapped_column(String(64))
    registered_by: Mapped[str] = mapped_column(String(200))
    registered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    # Added later (REPRODUCIBILITY_COLUMNS, upgraded in place by migrations.py): NULL in rows written before, and
    # dataset_name/dataset_version also for a run on a folder outside the catalogue.
    dataset_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    dataset_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    dataset_source: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Versions of the interpreter and of the libraries that shape the weights (torch, numpy, Pillow, ...).
    library_versions: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # The hardware training ran on, in words (CPU architecture and model, or the GPU's name).
    training_hardware: Mapped[str | None] = mapped_column(String(300), nullable=True)
    # Config of the steps before training that shape its input (validated_images), as the run gave it.
    pipeline_config: Mapped[dict | None] = mapped_column(JSON, nullable=True)


# Columns of model_versions that registries written before them lack; `migrations.upgrade_schema` adds them.
REPRODUCIBILITY_COLUMNS = (
    "dataset_name",
    "dataset_version",
    "dataset_source",
    "library_versions",
    "training_hardware",
    "pipeline_config",
)


class VersionState(Base):
    """A version's status in one environment; the partial unique indexes make two production versions impossible."""

    __tablename__ = "version_states"
    __table_args__ = (
        CheckConstraint(f"status IN {STATUSES!r}", name="ck_version_states_status"),
        Index(
            "uq_one_production_per_environment",
            "environment",
            unique=True,
            sqlite_where=text(f"status = '{PRODUCTION}'"),
            postgresql_where=text(f"status = '{PRODUCTION}'"),
        ),
        Index(
            "uq_one_staging_per_environment",
            "environment",
            unique=True,
            sqlite_where=text(f"status = '{STAGING}'"),
            postgresql_where=text(f"status = '{STAGING}'"),
        ),
    )

    environment: Mapped[str] = mapped_column(String(100), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))
    # The status a disabled version had, so `enable` knows where it returns.
    disabled_from: Mapped[str | None] = mapped_column(String(20), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class EnvironmentLock(Base):
    """One row per environment, locked by every transition so transitions in an environment run one at a time."""

    __tablename__ = "registry_environments"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class GateDecisionRecord(Base):
    """Each promotion-gate verdict on a version, with both models' metrics; append-only."""

    __tablename__ = "gate_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    environment: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    passed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON)
    dagster_run_id: Mapped[str] = mapped_column(String(64))
    decided_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class AuditEntry(Base):
    """Who moved which version from what to what, when and why; append-only."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    environment: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    action: Mapped[str] = mapped_column(String(50))
    from_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    to_status: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Dataset(Base):
    """A named dataset of the catalogue: where its files are read from (a folder or a gs:// prefix)."""

    __tablename__ = "datasets"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    source: Mapped[str] = mapped_column(Text)
    added_by: Mapped[str] = mapped_column(String(200))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class DatasetVersionRecord(Base):
    """A data version of a named dataset as raw_images recorded it (numbered per dataset); its files and manifest are
    in the dataset store until `collected_at` (set by `mlops datasets gc`)."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        UniqueConstraint("dataset_name", "number", name="uq_dataset_versions_number"),
        UniqueConstraint("dataset_name", "data_version", name="uq_dataset_versions_data_version"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dataset_name: Mapped[str] = mapped_column(String(100), index=True)
    number: Mapped[int] = mapped_column(Integer)
    data_version: Mapped[str] = mapped_column(String(64), index=True)
    source: Mapped[str] = mapped_column(Text)
    num_images: Mapped[int] = mapped_column(Integer)
    num_classes: Mapped[int] = mapped_column(Integer)
    total_bytes: Mapped[int] = mapped_column(BigInteger)
    class_counts: Mapped[dict] = mapped_column(JSON)
    recorded_by: Mapped[str] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    collected_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CurrentDataset(Base):
    """The project's current dataset in one environment, which runs that choose none read and the sensor watches: a
    catalogue name (with a version number to pin one) or a path."""

    __tablename__ = "current_datasets"

    environment: Mapped[str] = mapped_column(String(100), primary_key=True)
    dataset_name: Mapped[str | None] = mapped_column(String(100), nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    path: Mapped[str | None] = mapped_column(Text, nullable=True)
    chosen_by: Mapped[str] = mapped_column(String(200))
    chosen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


# Nothing is ever deleted, and history is never rewritten: the database itself refuses, whatever client connects.
_IMMUTABLE = {
    "model_versions": ("DELETE", "UPDATE"),
    "audit_log": ("DELETE", "UPDATE"),
    "gate_decisions": ("DELETE", "UPDATE"),
    "version_states": ("DELETE",),
    # A dataset's name and source stay as added; its versions are marked collected, never deleted.
    "datasets": ("DELETE", "UPDATE"),
    "dataset_versions": ("DELETE",),
}

# `%%`: DDL statements are %-formatted by SQLAlchemy; PL/pgSQL's RAISE placeholders are single `%` in the database.
_POSTGRES_REFUSE_FUNCTION = DDL(
    "CREATE OR REPLACE FUNCTION registry_refuse_change() RETURNS trigger AS $$ BEGIN "
    "RAISE EXCEPTION 'the model registry never deletes or rewrites history (%% on %%); disable a version instead', "
    "TG_OP, TG_TABLE_NAME; END; $$ LANGUAGE plpgsql"
)


def sqlite_guard_statements(table_name: str) -> list[str]:
    """The SQLite triggers that refuse `table_name`'s guarded operations (re-created when a table is rebuilt)."""
    statements = []
    for operation in _IMMUTABLE[table_name]:
        name = f"refuse_{operation.lower()}_{table_name}"
        message = f"the model registry never deletes or rewrites history ({operation} on {table_name})"
        statements.append(
            f"CREATE TRIGGER IF NOT EXISTS {name} BEFORE {operation} ON {table_name} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
    return statements


def _install_guards(table_name: str, operations: tuple[str, ...]) -> None:
    table = Base.metadata.tables[table_name]
    for operation, statement in zip(operations, sqlite_guard_statements(table_name), strict=True):
        name = f"refuse_{operation.lower()}_{table_name}"
        sqlite = DDL(statement)
        postgres = DDL(
            f"CREATE TRIGGER {name} BEFORE {operation} ON {table_name} "
            "FOR EACH ROW EXECUTE FUNCTION registry_refuse_change()"
        )
        event.listen(table, "after_create", sqlite.execute_if(dialect="sqlite"))
        event.listen(table, "after_create", postgres.execute_if(dialect="postgresql"))


event.listen(Base.metadata, "before_create", _POSTGRES_REFUSE_FUNCTION.execute_if(dialect="postgresql"))
for _table_name, _operations in _IMMUTABLE.items():
    _install_guards(_table_name, _operations)
