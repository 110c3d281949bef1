"""The dataset catalogue, in the registry's database: named datasets, their recorded data versions (numbered per
dataset, like model versions) and each environment's current dataset.

A dataset's name and source never change and nothing is deleted (database triggers refuse it); a version's files may
be collected from the dataset store (`collected_at`), its record stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, func, inspect, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from mlops_assets.lib import postgres
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.registry.schema import CurrentDataset, Dataset, DatasetVersionRecord, ModelVersion, utc_now

# The launchpad's choice "the project's current dataset"; never a dataset's name.
CURRENT = "current"
# The bundled sample digits: always in the catalogue, read from a folder the code exports on first use.
SAMPLE = "sample"
SAMPLE_SOURCE = "bundled sample digits"
RESERVED = (CURRENT, SAMPLE)
NAME_RULE = "1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# A version is named by its number, or by its data version (SHA-256) or a prefix of it this long at least.
MIN_PREFIX = 8
_NUMBER = re.compile(r"^[0-9]{1,7}$")
_HEX = re.compile(rf"^[0-9a-f]{{{MIN_PREFIX},64}}$")
VERSION_RULE = f"a version number (`mlops datasets show NAME`) or a data version ({MIN_PREFIX} to 64 hex digits)"


class CatalogError(MLOpsError):
    """A dataset or version the catalogue does not hold, or a name it refuses; nothing was changed."""


def name_problem(name: str) -> str:
    """Why `name` cannot name a dataset ('' when it can)."""
    if not _NAME.match(name):
        return f"not a dataset name ({NAME_RULE})"
    if name in RESERVED:
        return f"reserved ({CURRENT!r} means the current dataset, {SAMPLE!r} is the bundled sample)"
    return ""


def split_reference(text: str) -> tuple[str, str] | None:
    """`NAME` or `NAME@VERSION` as (name, version text; '' for none) when `text` has that shape, else None (a path
    or a URL, which may contain '@' too)."""
    name, at, version = text.partition("@")
    if not _NAME.match(name) or (at and not version):
        return None
    return name, version


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive UTC; PostgreSQL an aware time in the session's zone.
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DatasetVersionView:
    """One recorded data version of a dataset: its number, SHA-256 data version, where it was read from, counts,
    the run that recorded it, and when its files were collected from the store (None while they are kept)."""

    dataset: str
    number: int
    data_version: str
    source: str
    num_images: int
    num_classes: int
    total_bytes: int
    class_counts: dict
    recorded_by: str
    recorded_at: datetime
    collected_at: datetime | None

    @property
    def reference(self) -> str:
        """How a run names it: `NAME@NUMBER`."""
        return f"{self.dataset}@{self.number}"


@dataclass(frozen=True)
class DatasetView:
    """A dataset of the catalogue with its latest recorded version (None before a run read it)."""

    name: str
    source: str
    added_by: str
    added_at: datetime | None
    latest: DatasetVersionView | None
    num_versions: int


@dataclass(frozen=True)
class CurrentChoice:
    """The current dataset of an environment: a name (with `version` to pin one) or a path."""

    dataset_name: str | None
    version: int | None
    path: str | None
    chosen_by: str
    chosen_at: datetime

    def __str__(self) -> str:
        if self.dataset_name is None:
            return f"the folder {self.path}"
        return f"{self.dataset_name}@{self.version}" if self.version else self.dataset_name


def _version_view(row: DatasetVersionRecord) -> DatasetVersionView:
    return DatasetVersionView(
        row.dataset_name,
        row.number,
        row.data_version,
        row.source,
        row.num_images,
        row.num_classes,
        row.total_bytes,
        dict(row.class_counts),
        row.recorded_by,
        _utc(row.recorded_at),
        _utc(row.collected_at),
    )


class DatasetCatalog:
    """Named datasets and their versions (shared by every environment of the database) and the current dataset of
    `environment`."""

    def __init__(self, engine: Engine, environment: str) -> None:
        self.engine = engine
        self.environment = environment

    # ---- datasets ----------------------------------------------------------------------------------------------

    def add(self, name: str, source: str, actor: str) -> tuple[DatasetView, bool]:
        """Add `name` reading `source`; (its view, whether it was added). The same name and source again is not an
        error; the name with another source is refused with CatalogError."""
        problem = name_problem(name)
        if problem:
            raise CatalogError(f"Dataset name {name!r}: {problem}.")
        with Session(self.engine) as session, session.begin():
            existing = session.get(Dataset, name)
            if existing is not None and existing.source != source:
                raise CatalogError(
                    f"Dataset {name!r} is already in the catalogue with source {existing.source}; a dataset's "
                    "source never changes (its versions were read from it): add the new source under another name."
                )
            created = existing is None
            if created:
                session.add(Dataset(name=name, source=source, added_by=actor, added_at=utc_now()))
        return self.dataset(name), created

    def names(self) -> list[str]:
        """Every dataset name, the sample first."""
        with Session(self.engine) as session:
            return [SAMPLE, *session.execute(select(Dataset.name).order_by(Dataset.name)).scalars()]

    def dataset(self, name: str) -> DatasetView:
        """The dataset `name` (the sample included); raises CatalogError naming the known ones."""
        with Session(self.engine) as session:
            if name == SAMPLE:
                row = Dataset(name=SAMPLE, source=SAMPLE_SOURCE, added_by="mlops (built in)", added_at=None)
            else:
                row = session.get(Dataset, name)
            if row is not None:
                latest = self._latest(session, name)
                count = session.execute(
                    select(func.count())
                    .select_from(DatasetVersionRecord)
                    .where(DatasetVersionRecord.dataset_name == name)
                ).scalar_one()
                return DatasetView(row.name, row.source, row.added_by, _utc(row.added_at), latest, count)
        # Outside the session: on SQLite every transaction holds the write lock (BEGIN IMMEDIATE).
        raise CatalogError(
            f"There is no dataset named {name!r} in the catalogue (known: {', '.join(self.names())}); add it with "
            f"`mlops datasets add {name} SOURCE`, or pass a folder path."
        )

    def datasets(self) -> list[DatasetView]:
        return [self.dataset(name) for name in self.names()]

    # ---- versions ----------------------------------------------------------------------------------------------

    def _latest(self, session: Session, name: str) -> DatasetVersionView | None:
        row = session.execute(
            select(DatasetVersionRecord)
            .where(DatasetVersionRecord.dataset_name == name)
            .order_by(DatasetVersionRecord.number.desc())
            .limit(1)
        ).scalar_one_or_none()
        return None if row is None else _version_view(row)

    def versions(self, name: str) -> list[DatasetVersionView]:
        """The recorded versions of `name`, oldest first; raises CatalogError for an unknown dataset."""
        self.dataset(name)
        with Session(self.engine) as session:
            rows = session.execute(
                select(DatasetVersionRecord)
                .where(DatasetVersionRecord.dataset_name == name)
                .order_by(DatasetVersionRecord.number)
            ).scalars()
            return [_version_view(row) for row in rows]

    def version(self, name: str, reference: str | int) -> DatasetVersionView:
        """Version `reference` of `name`: its number, or its data version or a unique prefix of it (at least
        MIN_PREFIX hex digits). Raises CatalogError naming the versions there are."""
        versions = self.versions(name)
        text = str(reference).strip().lower()
        if _NUMBER.match(text):
            found = [view for view in versions if view.number == int(text)]
        elif _HEX.match(text):
            found = [view for view in versions if view.data_version.startswith(text)]
        else:
            raise CatalogError(f"Dataset version {reference!r} of {name!r}: expected {VERSION_RULE}.")
        if len(found) == 1:
            return found[0]
        if not versions:
            listing = "none yet: a run on it records the first"
        else:
            latest = versions[-1]
            listing = f"1 to {latest.number}, the latest {latest.number} = data version {latest.data_version[:12]}"
        which = "matches several" if found else "is not one"
        raise CatalogError(
            f"{reference!r} {which} of the recorded versions of dataset {name!r} ({listing}); see "
            f"`mlops datasets show {name}`."
        )

    def version_by_data(self, name: str, data_version: str) -> DatasetVersionView | None:
        with Session(self.engine) as session:
            row = session.execute(
                select(DatasetVersionRecord).where(
                    DatasetVersionRecord.dataset_name == name, DatasetVersionRecord.data_version == data_version
                )
            ).scalar_one_or_none()
            return None if row is None else _version_view(row)

    def record_version(
        self,
        name: str,
        source: str,
        data_version: str,
        num_images: int,
        class_counts: dict[str, int],
        total_bytes: int,
        recorded_by: str,
    ) -> tuple[DatasetVersionView, bool]:
        """Record `data_version` of dataset `name` (its files are in the store); (its view, whether it is new). A
        version recorded before keeps its number; one whose files were collected is marked kept again."""
        self.dataset(name)
        for _attempt in range(3):
            try:
                with Session(self.engine, expire_on_commit=False) as session, session.begin():
                    row = session.execute(
                        select(DatasetVersionRecord).where(
                            DatasetVersionRecord.dataset_name == name,
                            DatasetVersionRecord.data_version == data_version,
                        )
                    ).scalar_one_or_none()
                    if row is not None:
                        row.collected_at = None  # the run just kept its files again
                        return _version_view(row), False
                    latest = session.execute(
                        select(func.max(DatasetVersionRecord.number)).where(DatasetVersionRecord.dataset_name == name)
                    ).scalar_one()
                    row = DatasetVersionRecord(
                        dataset_name=name,
                        number=(latest or 0) + 1,
                        data_version=data_version,
                        source=source,
                        num_images=num_images,
                        num_classes=len(class_counts),
                        total_bytes=total_bytes,
                        class_counts=dict(class_counts),
                        recorded_by=recorded_by,
                        recorded_at=utc_now(),
                    )
                    session.add(row)
                    session.flush()
                    return _version_view(row), True
            except IntegrityError:
                continue  # another process recorded a version of this dataset at the same moment (PostgreSQL)
        raise CatalogError(f"Could not record a version of dataset {name!r}: other writers kept winning; run again.")

    def mark_collected(self, kept_data_versions: set[str]) -> list[DatasetVersionView]:
        """Mark every version whose data version is not in `kept_data_versions` as collected now; returns them."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            rows = session.execute(
                select(DatasetVersionRecord).where(DatasetVersionRecord.collected_at.is_(None))
            ).scalars()
            marked = []
            for row in rows:
                if row.data_version not in kept_data_versions:
                    row.collected_at = utc_now()
                    marked.append(row)
            session.flush()
            return [_version_view(row) for row in marked]

    # ---- what model versions reference -------------------------------------------------------------------------

    def referenced_data_versions(self) -> set[str]:
        """The data versions every registered model version (of any model, in any environment) was trained on."""
        with Session(self.engine) as session:
            return set(session.execute(select(ModelVersion.data_version).distinct()).scalars())

    def models_trained_on(self, data_version: str) -> list[int]:
        with Session(self.engine) as session:
            query = select(ModelVersion.number).where(ModelVersion.data_version == data_version)
            return sorted(session.execute(query.order_by(ModelVersion.number)).scalars())

    # ---- the current dataset -----------------------------------------------------------------------------------

    def current(self) -> CurrentChoice | None:
        """This environment's current dataset; None when none was ever chosen."""
        with Session(self.engine) as session:
            row = session.get(CurrentDataset, self.environment)
            if row is None:
                return None
            return CurrentChoice(row.dataset_name, row.version, row.path, row.chosen_by, _utc(row.chosen_at))

    def set_current(self, actor: str, name: str | None = None, version: int | None = None, path: str | None = None):
        """Make a catalogue dataset (a version number pins one) or a path the environment's current dataset."""
        if (name is None) == (path is None):
            raise ValueError("the current dataset is a name or a path")
        if name is not None:
            self.dataset(name)
        with Session(self.engine) as session, session.begin():
            row = session.get(CurrentDataset, self.environment)
            if row is None:
                row = CurrentDataset(environment=self.environment)
                session.add(row)
            row.dataset_name, row.version, row.path = name, version, path
            row.chosen_by, row.chosen_at = actor, utc_now()


def read_only_engine(url: str) -> Engine | None:
    """An engine that can only read the registry at `url` (None for a SQLite file that does not exist yet): for
    looking at the catalogue without creating or upgrading anything."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            return None
        path = Path(parsed.database).expanduser().resolve()
        if not path.is_file():
            return None
        # A read-write connection told to refuse writes, not SQLite's `mode=ro`: a read-only connection cannot take
        # part in the write-ahead log's shared memory, and racing another process's open it read the file as
        # malformed.
        engine = create_engine(f"sqlite:///file:{quote(str(path))}?uri=true", poolclass=NullPool)

        @event.listens_for(engine, "connect")
        def _refuse_writes(connection, _record) -> None:  # noqa: ANN001 - a DB-API connection
            connection.execute("PRAGMA query_only = ON")

        return engine
    return create_engine(
        postgres.with_psycopg2(url),
        poolclass=NullPool,
        connect_args={"connect_timeout": postgres.CONNECT_TIMEOUT_S},
    )


def read_catalogue(url: str, environment: str) -> tuple[list[DatasetView], CurrentChoice | None]:
    """The datasets (the sample first) and `environment`'s current dataset, read without changing anything; a
    registry that does not exist yet, or predates the catalogue, holds only the sample. Raises SQLAlchemyError when
    the database cannot be read."""
    engine = read_only_engine(url)
    sample = DatasetView(SAMPLE, SAMPLE_SOURCE, "mlops (built in)", None, None, 0)
    if engine is None:
        return [sample], None
    try:
        if not inspect(engine).has_table(CurrentDataset.__tablename__):
            return [sample], None
        catalog = DatasetCatalog(engine, environment)
        return catalog.datasets(), catalog.current()
    finally:
        engine.dispose()
