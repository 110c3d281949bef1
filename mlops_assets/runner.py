"""Run the training pipeline job of the code location, in this process, on the project's instance; summarize it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_assets import settings
from mlops_assets.housekeeping import process_tags, tidy

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from mlops_assets.dataset_choice import DatasetChoice, ResolvedDataset
    from mlops_assets.lib.registry.registry import ModelRegistry

# INFO logs: the CLI prints a summary, not Dagster's debug log. (Steps run in this process: the code location's
# executor is in-process.)
CLI_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


@dataclass
class RunSummary:
    run_id: str
    success: bool
    materialized: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # What start-up housekeeping did before the run (runs of dead processes failed, leftovers removed).
    housekeeping: list[str] = field(default_factory=list)
    # Set when the promotion was refused because production changed after the gate: what is in production now and
    # who put it there (the champion line above it is what the gate compared with).
    production_now: str = ""

    def value(self, asset: str, key: str) -> Any:
        return self.materialized.get(asset, {}).get(key)


def _metadata_values(metadata: dict) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def _prepare(dataset: str | Path | None, run_config: dict | None) -> tuple[DatasetChoice | None, dict | None]:
    """The dataset choice `--dataset` makes (NAME, NAME@VERSION, a folder, or a gs:// URL where the environment reads
    GCS; None: the run's default, the current dataset) and the run config carrying it in raw_images' config. Raises
    ConfigError for an unknown name or a run config that chooses another dataset."""
    settings.export_environment()
    from mlops_assets.dataset_runs import choice_from_argument, with_choice

    choice = choice_from_argument(None if dataset is None else str(dataset))
    return choice, with_choice(run_config, choice)


def _choose(choice: DatasetChoice | None) -> ResolvedDataset:
    """After the preflight: resolve the run's dataset as raw_images will (a pinned version's files missing from the
    store are refused here)."""
    from mlops_assets.dataset_runs import check_choice

    return check_choice(choice)


def _remember(choice: DatasetChoice | None) -> None:
    """Once the run has read the dataset (raw_images succeeded, or a rebuild found it current): an explicit choice
    becomes the project's current dataset. A choice that could not be read changes nothing."""
    from mlops_assets.dataset_runs import remember

    if choice is not None:
        remember(choice)


def _open_instance() -> tuple[DagsterInstance, list[str]]:
    """The home's instance (created under its lock, see settings.open_instance) and what start-up housekeeping did:
    runs left in progress by dead processes are failed and their leftovers removed before this run starts."""
    instance = settings.open_instance()
    return instance, tidy(instance).notes()


def _execute(
    instance, run_config: dict | None, asset_selection: list[str] | None, tags: dict, job_name: str = ""
) -> RunSummary:
    """Create a run of `job_name` (default: the pipeline job) in the code location (the UI lists it under the job)
    and execute it in this process."""
    import dagster as dg

    # What execute_job does, plus the run's origin in the code location, which execute_job cannot set.
    from dagster._core.execution.api import execute_run

    from mlops_assets.code_location import code_location_job
    from mlops_assets.defs.jobs import PIPELINE_JOB_NAME

    # Output(data_version=...) is beta in Dagster; used on purpose, so keep the user's console clean.
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    located = code_location_job(job_name or PIPELINE_JOB_NAME)
    job_def = located.job.get_definition()
    run = instance.create_run_for_job(
        job_def=job_def,
        run_config={**CLI_RUN_CONFIG, **(run_config or {})},
        # The process is recorded so a later start can tell whether a run left STARTED is still running.
        tags={**job_def.run_tags, **tags, **process_tags()},
        asset_selection=frozenset(dg.AssetKey(name) for name in asset_selection) if asset_selection else None,
        remote_job_origin=located.remote_origin,
        job_code_origin=located.job.get_python_origin(),
        repository_load_data=located.job.repository.repository_load_data,
    )
    result = execute_run(located.job, run, instance, raise_on_error=False)
    summary = RunSummary(run_id=result.run_id, success=result.success)
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            summary.materialized[materialization.asset_key.to_user_string()] = _metadata_values(
                materialization.metadata
            )
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.event_specific_data.error
            cause = error.cause or error
            if "DagsterAssetCheckFailedError" in (cause.cls_name or ""):
                continue  # the failed check's own evaluation (below) already says why
            summary.failures.append(f"step {event.step_key} failed: {cause.message.strip()}")
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.event_specific_data
            if not evaluation.passed:
                where = f"check {evaluation.check_name} on {evaluation.asset_key.to_user_string()}"
                if evaluation.severity == dg.AssetCheckSeverity.WARN:
                    summary.warnings.append(f"{where} warns: {evaluation.description or ''}")
                else:
                    summary.failures.append(f"{where} failed: {evaluation.description or ''}")
    if not result.success and not summary.failures:
        summary.failures.append(f"run {result.run_id} did not succeed; see it in the Dagster UI.")
    return summary


def run_pipeline(dataset: str | Path | None, run_config: dict | None = None) -> RunSummary:
    """Materialize every asset in one run of the code location's pipeline job, in this process (MLOPS_HOME's
    instance; the UI lists the run under the job)."""
    choice, run_config = _prepare(dataset, run_config)
    from mlops_assets.config_checks import check_before_run

    check_before_run(run_config)  # settings, registry file, run config: refused before any run or asset exists
    _choose(choice)
    instance, tidied = _open_instance()
    with instance:
        summary = _execute(instance, run_config, None, {"launched_by": "mlops run"})
    if "raw_images" in summary.materialized:
        _remember(choice)
    summary.housekeeping = tidied
    _note_production_change(summary)
    return summary


def _note_production_change(summary: RunSummary) -> None:
    """When the promotion was refused because production changed since the gate, record what production is now."""
    from mlops_assets.lib.registry.registry import PRODUCTION_CHANGED
    from mlops_assets.registry_home import open_registry

    if any(PRODUCTION_CHANGED in failure for failure in summary.failures):
        with open_registry() as models:
            summary.production_now = production_now(models)


def production_now(models: ModelRegistry) -> str:
    """The production version of `models` and the audit entry that put it there, in words ("version 3, promoted
    by dagster run 5f0c... on 2026-01-02 10:11:12 UTC"; "no version is in production in local")."""
    from mlops_assets.lib.registry.schema import PRODUCTION

    current = models.production()
    if current is None:
        return f"no version is in production in {models.environment}"
    entries = [entry for entry in models.history(current.number) if entry.to_status == PRODUCTION]
    if not entries:  # a registry whose audit log predates this version's production entry
        return f"version {current.number}"
    entry = entries[-1]
    how = _PUT_IN_PRODUCTION.get(entry.action, f"put there ({entry.action})")
    return f"version {current.number}, {how} by {entry.actor} on {entry.at:%Y-%m-%d %H:%M:%S} UTC"


# The audit actions that move a version into production, as the summary says them.
_PUT_IN_PRODUCTION = {"promote": "promoted", "force-promote": "force-promoted", "rollback": "rolled back to"}


@dataclass
class RebuildSummary:
    """Each round: the stale assets with their reasons, and the run that rebuilt them."""

    rounds: list[tuple[dict[str, list[str]], RunSummary]] = field(default_factory=list)
    housekeeping: list[str] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(run.success for _, run in self.rounds)

    @property
    def materialized(self) -> list[str]:
        return [name for _, run in self.rounds for name in run.materialized]


def rebuild_pipeline(
    dataset: str | Path | None, run_config: dict | None = None, max_rounds: int = 10
) -> RebuildSummary:
    """Materialize only what is stale, round after round, until nothing is (staleness does not propagate by itself)."""
    choice, run_config = _prepare(dataset, run_config)
    from mlops_assets.config_checks import check_before_run

    check_before_run(run_config)  # settings, registry file, run config: refused before any run or asset exists
    resolved = _choose(choice)
    from mlops_assets.dataset_runs import data_version_now
    from mlops_assets.definitions import build_definitions
    from mlops_assets.staleness import stale_assets

    # The dataset the run's raw_images step reads (the current one when none is given), as it is now.
    current = data_version_now(resolved)
    instance, tidied = _open_instance()
    summary = RebuildSummary(housekeeping=tidied)
    with instance:
        for _ in range(max_rounds):
            # Code versions are read from the source each round, as each round's run reads them: a source file
            # edited while a rebuild runs is then one more round, not a mismatch that never settles.
            stale = stale_assets(build_definitions(), instance, current)
            if not stale:
                _remember(choice)
                return summary
            run = _execute(instance, run_config, list(stale), {"launched_by": "mlops rebuild"})
            summary.rounds.append((stale, run))
            if "raw_images" in run.materialized:
                _remember(choice)
            if not run.success:
                return summary
    raise RuntimeError(f"Assets were still stale after {max_rounds} rebuild rounds; see the Dagster UI.")


def format_rebuild(summary: RebuildSummary) -> str:
    lines = [f"housekeeping: {note}" for note in summary.housekeeping]
    if not summary.rounds:
        return "\n".join([*lines, "Everything is up to date: nothing materialized."])
    for stale, run in summary.rounds:
        lines.append(f"Dagster run {run.run_id}: {'SUCCESS' if run.success else 'FAILED'}")
        for name, reasons in stale.items():
            hit = run.materialized.get(name, {}).get("cache_hit")
            outcome = "reused cached result" if hit else "rebuilt" if name in run.materialized else "not built"
            lines.append(f"  {name}: {outcome} ({'; '.join(reasons)})")
        lines += [f"  {failure}" for failure in run.failures]
    lines.append(f"Materialized {len(summary.materialized)} assets: {', '.join(summary.materialized)}")
    return "\n".join(lines)


def _label_folders(summary: RunSummary) -> str:
    """The dataset's label folders, counting and naming the empty ones (the class_coverage check reports them)."""
    empty = list(summary.value("raw_images", "empty_label_folders") or [])
    folders = (summary.value("raw_images", "num_classes") or 0) + len(empty)
    text = f"{folders} label folder{'' if folders == 1 else 's'}"
    return f"{text}, {len(empty)} empty ({', '.join(empty)})" if empty else text


def format_summary(summary: RunSummary) -> str:
    lines = [f"Dagster run {summary.run_id}: {'SUCCESS' if summary.success else 'FAILED'}"]
    lines += [f"  housekeeping:  {note}" for note in summary.housekeeping]
    if "raw_images" in summary.materialized:
        version = summary.value("raw_images", "dataset_version")
        lines.append(
            f"  dataset:       {version if version and version != '-' else summary.value('raw_images', 'dataset')} "
            f"({summary.value('raw_images', 'dataset_source')}): {summary.value('raw_images', 'num_images')} images, "
            f"{_label_folders(summary)}, "
            f"data version {str(summary.value('raw_images', 'data_version'))[:16]}"
        )
    if "model_evaluation" in summary.materialized:
        lines.append(
            f"  test metrics:  accuracy {summary.value('model_evaluation', 'accuracy'):.4f}, "
            f"macro F1 {summary.value('model_evaluation', 'macro_f1'):.4f} "
            f"on {summary.value('model_evaluation', 'num_test_images')} test images"
        )
    if summary.value("model_evaluation", "champion"):
        lines.append(f"  champion:      {summary.value('model_evaluation', 'champion')}")
        if summary.value("model_evaluation", "accuracy_difference") is not None:
            lines.append(
                f"                 accuracy {summary.value('model_evaluation', 'champion_accuracy'):.4f} on the same "
                f"test split; candidate - champion {summary.value('model_evaluation', 'accuracy_difference'):+.4f}"
            )
    if summary.production_now:
        lines.append(f"  production:    changed since the gate; now {summary.production_now}")
    if "bento" in summary.materialized:
        lines.append(f"  model version: {summary.value('bento', 'model_tag')}")
        lines.append(f"  bento:         {summary.value('bento', 'bento_tag')}")
        lines.append(f"  registry:      {summary.value('bento', 'registration_when_built')}")
    if "model_promotion" in summary.materialized:
        lines.append(f"  promotion:     {summary.value('model_promotion', 'outcome')}")
    lines += [f"  warning: {warning}" for warning in summary.warnings]
    lines += [f"  {failure}" for failure in summary.failures]
    return "\n".join(lines)
