"""Registry transitions: each one a single transaction holding the environment's lock row."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.registry.database import create_registry_engine, opening
from mlops_assets.lib.registry.datasets import DatasetCatalog
from mlops_assets.lib.registry.gate import GateDecision
from mlops_assets.lib.registry.migrations import upgrade_schema
from mlops_assets.lib.registry.schema import (
    ARCHIVED,
    CANDIDATE,
    DISABLED,
    PRODUCTION,
    STAGING,
    AuditEntry,
    Base,
    EnvironmentLock,
    GateDecisionRecord,
    ModelVersion,
    VersionState,
    utc_now,
)

PROMOTION_TARGETS = (STAGING, PRODUCTION)


class RegistryError(MLOpsError):
    """A transition the registry refuses; the message says what to do instead."""


@dataclass(frozen=True)
class NewVersion:
    """Lineage of a built model, as the pipeline registers it."""

    model_name: str
    model_tag: str
    bento_tag: str
    package_path: str
    weights_sha256: str
    plugin: str
    labels: list[str]
    data_version: str
    dataset_size: int
    code_versions: dict
    git_commit: str
    git_dirty: bool | None  # None: git could not tell (see provenance.git_state)
    hyperparameters: dict
    metrics: dict
    training_seconds: float
    training_device: str
    parent_version: int | None
    dagster_run_id: str
    # What `mlops reproduce` needs besides the above (None where it is unknown, e.g. a run on a folder outside the
    # catalogue has no dataset name or version).
    dataset_name: str | None = None
    dataset_version: int | None = None
    dataset_source: str | None = None
    library_versions: dict | None = None
    training_hardware: str | None = None
    pipeline_config: dict | None = None


@dataclass(frozen=True)
class VersionView:
    """A version with its status in the registry's environment (read-only snapshot)."""

    number: int
    status: str
    model_tag: str
    bento_tag: str
    package_path: str
    weights_sha256: str
    plugin: str
    labels: list
    data_version: str
    dataset_size: int
    code_versions: dict
    git_commit: str
    git_dirty: bool | None
    hyperparameters: dict
    metrics: dict
    training_seconds: float
    training_device: str
    parent_version: int | None
    dagster_run_id: str
    registered_by: str
    registered_at: datetime
    # None in versions registered before these were recorded.
    dataset_name: str | None = None
    dataset_version: int | None = None
    dataset_source: str | None = None
    library_versions: dict | None = None
    training_hardware: str | None = None
    pipeline_config: dict | None = None

    @property
    def dataset_reference(self) -> str | None:
        """`NAME@NUMBER` of the catalogue version it was trained on (None for a folder outside the catalogue)."""
        if self.dataset_name is None or self.dataset_version is None:
            return None
        return f"{self.dataset_name}@{self.dataset_version}"


@dataclass(frozen=True)
class AuditView:
    id: int
    version: int
    action: str
    from_status: str | None
    to_status: str
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class GateView:
    version: int
    passed: bool
    reason: str
    details: dict
    dagster_run_id: str
    decided_at: datetime


# Audit-log actions after which the pipeline never promotes a version again; only a person, with a reason, does.
HOLDING_ACTIONS = {"rolled-back": "rolled back", "disable": "disabled"}


@dataclass(frozen=True)
class PromotionHold:
    """Why a version is only promoted deliberately: its latest rollback out of production or disable (`at` in UTC)."""

    version: int
    status: str
    action: str
    actor: str
    reason: str
    at: datetime

    def __str__(self) -> str:
        return (
            f"version {self.version} was {HOLDING_ACTIONS[self.action]} on {self.at:%Y-%m-%d %H:%M:%S} UTC "
            f"by {self.actor}: {self.reason}"
        )

    @property
    def remedy(self) -> str:
        promote = f"promote it with `mlops models promote {self.version} --reason ...`"
        if self.status == DISABLED:
            return f"enable it (`mlops models enable {self.version}`), then {promote}"
        return promote


@dataclass(frozen=True)
class Registration:
    version: VersionView
    created: bool


@dataclass(frozen=True)
class GatedPromotion:
    """Where the pipeline's promotion left a version, and the rollback or disable that held it back, if any."""

    version: VersionView
    hold: PromotionHold | None


# The pipeline's promotion refuses with this when production moved after its gate compared the candidate with it.
PRODUCTION_CHANGED = "production changed since the gate; rerun"


class ModelRegistry:
    """Model versions of one model name and their statuses in one environment."""

    def __init__(
        self,
        url: str,
        environment: str,
        model_name: str = "image-classifier",
        home_history: Sequence[str] | None = None,
    ) -> None:
        """Open (creating or upgrading) the registry at `url`. `home_history` lists what else the home holds (bentos,
        runs, ...; [] for nothing, None where the caller cannot tell): an empty SQLite file is started anew only when
        it is []. Raises RegistryFileError naming an empty or unreadable file and how to restore it."""
        self.url = url
        self.environment = environment
        self.model_name = model_name
        self.engine = create_registry_engine(url)
        try:
            with opening(self.engine, home_history):
                Base.metadata.create_all(self.engine)
                # The copy kept before a schema upgrade changed the file (None when nothing changed).
                self.schema_backup = upgrade_schema(self.engine)
                self._ensure_environment_row()
        except BaseException:
            self.engine.dispose()
            raise

    def close(self) -> None:
        self.engine.dispose()

    @property
    def datasets(self) -> DatasetCatalog:
        """The dataset catalogue in the same database, with this registry's environment's current dataset."""
        return DatasetCatalog(self.engine, self.environment)

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _ensure_environment_row(self) -> None:
        try:
            with Session(self.engine) as session, session.begin():
                if session.get(EnvironmentLock, self.environment) is None:
                    session.add(EnvironmentLock(name=self.environment, revision=0))
        except IntegrityError:
            # Another process created the row between our read and insert (PostgreSQL); the row exists, as wanted.
            with Session(self.engine) as session:
                if session.get(EnvironmentLock, self.environment) is None:
                    raise

    @contextmanager
    def _transition(self) -> Iterator[Session]:
        """One transaction holding this environment's lock row (FOR UPDATE; SQLite: BEGIN IMMEDIATE)."""
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            lock = session.execute(
                select(EnvironmentLock).where(EnvironmentLock.name == self.environment).with_for_update()
            ).scalar_one()
            lock.revision += 1
            lock.updated_at = utc_now()
            yield session

    # ---- reads -------------------------------------------------------------------------------------------------

    def _version_row(self, session: Session, number: int) -> ModelVersion:
        row = session.execute(
            select(ModelVersion).where(ModelVersion.model_name == self.model_name, ModelVersion.number == number)
        ).scalar_one_or_none()
        if row is None:
            raise RegistryError(f"There is no version {number} of {self.model_name}; see `mlops models list`.")
        return row

    def _state(self, session: Session, version: ModelVersion) -> VersionState | None:
        return session.get(VersionState, (self.environment, version.id))

    def _view(self, version: ModelVersion, state: VersionState | None) -> VersionView:
        columns = {name: getattr(version, name) for name in VersionView.__dataclass_fields__ if name != "status"}
        return VersionView(status=state.status if state else "not registered here", **columns)

    def versions(self) -> list[VersionView]:
        with Session(self.engine) as session:
            rows = session.execute(
                select(ModelVersion, VersionState)
                .outerjoin(
                    VersionState,
                    (VersionState.version_id == ModelVersion.id) & (VersionState.environment == self.environment),
                )
                .where(ModelVersion.model_name == self.model_name)
                .order_by(ModelVersion.number)
            ).all()
            return [self._view(version, state) for version, state in rows]

    def version(self, number: int) -> VersionView:
        with Session(self.engine) as session:
            row = self._version_row(session, number)
            return self._view(row, self._state(session, row))

    def find_by_model_tag(self, model_tag: str) -> VersionView | None:
        with Session(self.engine) as session:
            row = session.execute(select(ModelVersion).where(ModelVersion.model_tag == model_tag)).scalar_one_or_none()
            return None if row is None else self._view(row, self._state(session, row))

    def _holder(self, session: Session, status: str) -> tuple[ModelVersion, VersionState] | None:
        found = session.execute(
            select(ModelVersion, VersionState)
            .join(VersionState, VersionState.version_id == ModelVersion.id)
            .where(VersionState.environment == self.environment, VersionState.status == status)
            .where(ModelVersion.model_name == self.model_name)
        ).one_or_none()
        return None if found is None else (found[0], found[1])

    def holder(self, status: str) -> VersionView | None:
        """The version in staging or production here, if any."""
        with Session(self.engine) as session:
            found = self._holder(session, status)
            return None if found is None else self._view(*found)

    def production(self) -> VersionView | None:
        return self.holder(PRODUCTION)

    def state_summary(self) -> dict[str, list[int]]:
        """Version numbers per status in this environment."""
        summary: dict[str, list[int]] = {}
        for view in self.versions():
            summary.setdefault(view.status, []).append(view.number)
        return summary

    def history(self, number: int | None = None) -> list[AuditView]:
        """Every status change in this environment, oldest first (optionally of one version)."""
        with Session(self.engine) as session:
            query = (
                select(AuditEntry, ModelVersion.number)
                .join(ModelVersion, ModelVersion.id == AuditEntry.version_id)
                .where(AuditEntry.environment == self.environment, ModelVersion.model_name == self.model_name)
                .order_by(AuditEntry.id)
            )
            if number is not None:
                query = query.where(ModelVersion.number == number)
            return [
                AuditView(e.id, n, e.action, e.from_status, e.to_status, e.actor, e.reason, e.at)
                for e, n in session.execute(query).all()
            ]

    def promotion_hold(self, number: int) -> PromotionHold | None:
        """The rollback or disable that keeps the pipeline from ever promoting this version again, if any."""
        with Session(self.engine) as session:
            return self._promotion_hold(session, self._version_row(session, number))

    def _promotion_hold(self, session: Session, version: ModelVersion) -> PromotionHold | None:
        # Derived from the append-only audit log, so registries written before this rule existed need no upgrade.
        entry = session.execute(
            select(AuditEntry)
            .where(
                AuditEntry.environment == self.environment,
                AuditEntry.version_id == version.id,
                AuditEntry.action.in_(tuple(HOLDING_ACTIONS)),
            )
            .order_by(AuditEntry.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        if entry is None:
            return None
        # SQLite hands back naive UTC; PostgreSQL an aware time in the session's zone.
        at = entry.at.astimezone(UTC) if entry.at.tzinfo else entry.at
        status = self._require_state(session, version).status
        return PromotionHold(version.number, status, entry.action, entry.actor, entry.reason, at)

    def gate_decisions(self, number: int) -> list[GateView]:
        with Session(self.engine) as session:
            version = self._version_row(session, number)
            rows = session.execute(
                select(GateDecisionRecord)
                .where(GateDecisionRecord.version_id == version.id, GateDecisionRecord.environment == self.environment)
                .order_by(GateDecisionRecord.id)
            ).scalars()
            return [GateView(number, r.passed, r.reason, r.details, r.dagster_run_id, r.decided_at) for r in rows]

    # ---- transitions -------------------------------------------------------------------------------------------

    def _move(
        self,
        session: Session,
        version: ModelVersion,
        state: VersionState,
        to: str,
        action: str,
        actor: str,
        reason: str,
    ) -> None:
        session.add(
            AuditEntry(
                environment=self.environment,
                version_id=version.id,
                action=action,
                from_status=state.status,
                to_status=to,
                actor=actor,
                reason=reason,
            )
        )
        state.status = to
        state.updated_at = utc_now()
        # Flush each move on its own so the one-production index never sees two holders mid-transaction.
        session.flush()

    def register(self, new: NewVersion, actor: str) -> Registration:
        """Record a built model as a candidate; the same model (same tag) registered again is the same version."""
        if new.model_name != self.model_name:
            raise RegistryError(f"This registry holds {self.model_name!r}, not {new.model_name!r}.")
        with self._transition() as session:
            existing = session.execute(
                select(ModelVersion).where(ModelVersion.model_tag == new.model_tag)
            ).scalar_one_or_none()
            created = existing is None
            if existing is None:
                latest = session.execute(
                    select(func.max(ModelVersion.number)).where(ModelVersion.model_name == self.model_name)
                ).scalar_one()
                existing = ModelVersion(number=(latest or 0) + 1, registered_by=actor, **asdict(new))
                session.add(existing)
                session.flush()
            state = self._state(session, existing)
            if state is None:
                state = VersionState(environment=self.environment, version_id=existing.id, status=CANDIDATE)
                session.add(state)
                session.add(
                    AuditEntry(
                        environment=self.environment,
                        version_id=existing.id,
                        action="register",
                        from_status=None,
                        to_status=CANDIDATE,
                        actor=actor,
                        reason=f"built by Dagster run {new.dagster_run_id}",
                    )
                )
                session.flush()
            return Registration(self._view(existing, state), created)

    def record_gate(self, number: int, decision: GateDecision, dagster_run_id: str) -> None:
        with self._transition() as session:
            version = self._version_row(session, number)
            session.add(
                GateDecisionRecord(
                    environment=self.environment,
                    version_id=version.id,
                    passed=decision.passed,
                    reason=decision.reason,
                    details=decision.details,
                    dagster_run_id=dagster_run_id,
                )
            )

    def _gate_passed(self, session: Session, version: ModelVersion) -> GateDecisionRecord | None:
        latest = session.execute(
            select(GateDecisionRecord)
            .where(GateDecisionRecord.version_id == version.id, GateDecisionRecord.environment == self.environment)
            .order_by(GateDecisionRecord.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        return latest if latest is not None and latest.passed else None

    def promote(
        self, number: int, to: str, actor: str, reason: str = "", force: bool = False, automatic: bool = False
    ) -> VersionView:
        """Move a version to staging or production; the incumbent there is archived. Force skips the gate only.

        A version once rolled back out of production or disabled (see `promotion_hold`) is refused when `automatic`
        (the pipeline) asks, and needs a reason when a person does.
        """
        if to not in PROMOTION_TARGETS:
            raise RegistryError(f"A version can be promoted to {PROMOTION_TARGETS}, not {to!r}.")
        if force and not reason.strip():
            raise RegistryError("A forced promotion needs a reason; pass one (--reason).")
        with self._transition() as session:
            version = self._version_row(session, number)
            state = self._require_state(session, version)
            if state.status == DISABLED:
                raise RegistryError(
                    f"Version {number} is disabled in {self.environment}; enable it (`mlops models enable {number}`) "
                    "before promoting it."
                )
            if state.status == to:
                raise RegistryError(f"Version {number} is already in {to} in {self.environment}.")
            if to == STAGING and state.status == PRODUCTION:
                raise RegistryError(f"Version {number} is in production; roll back instead of demoting it to staging.")
            hold = self._promotion_hold(session, version)
            if hold is not None and automatic:
                raise RegistryError(f"{hold}; the pipeline never promotes it again: {hold.remedy}.")
            if hold is not None and not reason.strip():
                raise RegistryError(
                    f"Promoting version {number} again needs a reason: {hold}. Pass one with "
                    f"`mlops models promote {number} --reason ...` (or `reason` in promote_model_job's config)."
                )
            action = "promote"
            if state.status == CANDIDATE and self._gate_passed(session, version) is None:
                if not force:
                    raise self._gate_not_passed(number)
                action = "force-promote"
            self._take_over(session, version, state, to, action, actor, reason)
            return self._view(version, state)

    def _gate_not_passed(self, number: int) -> RegistryError:
        return RegistryError(
            f"Version {number} has not passed the promotion gate in {self.environment} "
            f"(`mlops models show {number}` says why); pass --force with --reason to promote it anyway."
        )

    def _take_over(
        self,
        session: Session,
        version: ModelVersion,
        state: VersionState,
        to: str,
        action: str,
        actor: str,
        reason: str,
    ) -> None:
        """Move `version` to `to`, archiving the version that held it."""
        incumbent = self._holder(session, to)
        if incumbent is not None:
            self._move(session, *incumbent, ARCHIVED, "replaced", actor, f"replaced by version {version.number}")
        self._move(session, version, state, to, action, actor, reason)

    def promote_after_gate(
        self, number: int, compared_with: int | None, to_production: bool, actor: str
    ) -> GatedPromotion:
        """The pipeline's promotion of a version whose gate passed against production version `compared_with` (None:
        nothing was in production): to staging and, with `to_production`, on to production, in one transaction.

        Nothing moves when the version is already there (another run promoting the same model got there first: not
        an error), or when a rollback or disable holds it (returned; see `promotion_hold`). Raises RegistryError
        ("... production changed since the gate; rerun ...") when production is no longer `compared_with`: the gate's
        verdict was about a model that is not the one it would replace.
        """
        with self._transition() as session:
            version = self._version_row(session, number)
            state = self._require_state(session, version)
            target = PRODUCTION if to_production else STAGING
            if state.status in (target, PRODUCTION):
                return GatedPromotion(self._view(version, state), None)
            hold = self._promotion_hold(session, version)
            if hold is not None:
                return GatedPromotion(self._view(version, state), hold)
            if state.status == CANDIDATE and self._gate_passed(session, version) is None:
                raise self._gate_not_passed(number)
            current = self._holder(session, PRODUCTION)
            now = current[0].number if current is not None else None
            if now != compared_with:
                then = f"production version {compared_with}" if compared_with is not None else "no production model"
                holder = f"version {now} is" if now is not None else "no version is"
                raise RegistryError(
                    f"Version {number} was not promoted: {PRODUCTION_CHANGED} (`mlops run`), so that the gate "
                    f"compares it with what is in production now. The gate compared it with {then}; {holder} in "
                    f"production in {self.environment} now."
                )
            if state.status in (CANDIDATE, ARCHIVED):
                self._take_over(session, version, state, STAGING, "promote", actor, "passed the promotion gate")
            if to_production:
                reason = f"staging_to_production is automatic in {self.environment}"
                self._take_over(session, version, state, PRODUCTION, "promote", actor, reason)
            return GatedPromotion(self._view(version, state), None)

    def rollback(self, actor: str, reason: str = "", to_number: int | None = None) -> VersionView:
        """Return production to the previous production version (or a named one that was in production before)."""
        with self._transition() as session:
            current = self._holder(session, PRODUCTION)
            if current is None:
                raise RegistryError(f"Nothing is in production in {self.environment}; promote a version instead.")
            earlier = self._earlier_production_versions(session, current[0].id)
            if to_number is None:
                if not earlier:
                    raise RegistryError(
                        f"Version {current[0].number} is the only version ever in production in {self.environment}; "
                        "there is nothing to roll back to."
                    )
                target = earlier[0]
            else:
                target = self._version_row(session, to_number)
                if target.id == current[0].id:
                    raise RegistryError(f"Version {to_number} is already in production.")
                if target.id not in {v.id for v in earlier}:
                    raise RegistryError(
                        f"Version {to_number} was never in production in {self.environment}, or is disabled; "
                        "use `mlops models promote` for a first promotion."
                    )
            target_state = self._require_state(session, target)
            self._move(session, *current, ARCHIVED, "rolled-back", actor, reason or f"rolled back to {target.number}")
            self._move(session, target, target_state, PRODUCTION, "rollback", actor, reason)
            return self._view(target, target_state)

    def _earlier_production_versions(self, session: Session, current_id: int) -> list[ModelVersion]:
        """Versions that were in production before, most recent first, excluding the current and disabled ones."""
        entries = session.execute(
            select(AuditEntry.version_id)
            .where(AuditEntry.environment == self.environment, AuditEntry.to_status == PRODUCTION)
            .order_by(AuditEntry.id.desc())
        ).scalars()
        ordered: list[ModelVersion] = []
        for version_id in dict.fromkeys(entries):
            version = session.get(ModelVersion, version_id)
            state = self._state(session, version)
            if version_id != current_id and version.model_name == self.model_name and state.status != DISABLED:
                ordered.append(version)
        return ordered

    def disable(self, number: int, actor: str, reason: str) -> VersionView:
        """Keep a version and its history but refuse to promote or deploy it."""
        if not reason.strip():
            raise RegistryError("Disabling a version needs a reason; pass one (--reason).")
        with self._transition() as session:
            version = self._version_row(session, number)
            state = self._require_state(session, version)
            if state.status == PRODUCTION:
                raise RegistryError(
                    f"Version {number} is in production in {self.environment}; roll back first "
                    "(`mlops models rollback`), then disable it."
                )
            if state.status == DISABLED:
                raise RegistryError(f"Version {number} is already disabled.")
            state.disabled_from = state.status
            self._move(session, version, state, DISABLED, "disable", actor, reason)
            return self._view(version, state)

    def enable(self, number: int, actor: str, reason: str = "") -> VersionView:
        """Undo `disable`: back to candidate or archived; a version disabled in staging comes back as a candidate."""
        with self._transition() as session:
            version = self._version_row(session, number)
            state = self._require_state(session, version)
            if state.status != DISABLED:
                raise RegistryError(f"Version {number} is not disabled (it is {state.status}).")
            restored = state.disabled_from if state.disabled_from in (CANDIDATE, ARCHIVED) else CANDIDATE
            state.disabled_from = None
            self._move(session, version, state, restored, "enable", actor, reason)
            return self._view(version, state)

    def _require_state(self, session: Session, version: ModelVersion) -> VersionState:
        state = self._state(session, version)
        if state is None:
            raise RegistryError(f"Version {version.number} is not registered in environment {self.environment}.")
        return state
