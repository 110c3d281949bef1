"""Registry jobs for the Dagster launchpad: promote, roll back, disable and enable a version (never delete)."""

from typing import Literal

import dagster as dg
import pydantic

from mlops_assets.defs.promotion.presets import RegistryPresets
from mlops_assets.defs.promotion.state import registry_state_metadata
from mlops_assets.lib.registry.registry import ModelRegistry, VersionView
from mlops_assets.resources.registry import ModelRegistryResource


class PromoteConfig(dg.Config):
    """Version number and target; `force` skips a failed gate; both it and a version once rolled back or disabled
    need a reason."""

    version: int = pydantic.Field(ge=1, description="The registry version to promote: an integer >= 1.")
    to: Literal["staging", "production"] = pydantic.Field(default="production", description="The target status.")
    reason: str = pydantic.Field(default="", description="Why; required with `force` and for a held version.")
    force: bool = pydantic.Field(default=False, description="Promote although the version's latest gate failed.")


class RollbackConfig(dg.Config):
    """Back to the previous production version, or to `to_version` (0 = the previous one)."""

    to_version: int = pydantic.Field(
        default=0, ge=0, description="The version to go back to: an integer >= 1, or 0 for the previous one."
    )
    reason: str = pydantic.Field(default="", description="Why, recorded in the audit log.")


class DisableConfig(dg.Config):
    """The version to disable and why (required)."""

    version: int = pydantic.Field(ge=1, description="The registry version to disable: an integer >= 1.")
    reason: str = pydantic.Field(min_length=1, description="Why, recorded in the audit log (required).")


class EnableConfig(dg.Config):
    """The disabled version to enable again."""

    version: int = pydantic.Field(ge=1, description="The disabled registry version to enable: an integer >= 1.")
    reason: str = pydantic.Field(default="", description="Why, recorded in the audit log.")


def _actor(context: dg.OpExecutionContext) -> str:
    """Who acted, as the audit log records it: the launching user where Dagster records one (its `dagster/user` run
    tag, set where the UI signs users in), and the run."""
    user = context.run.tags.get("dagster/user")
    return f"{user} via dagster run {context.run_id}" if user else f"dagster run {context.run_id}"


def _report(context: dg.OpExecutionContext, models: ModelRegistry, view: VersionView, action: str, reason: str) -> None:
    """Log the outcome and show the new registry state, why and by whom on the model_promotion asset."""
    context.log.info(f"{action}: version {view.number} is now {view.status} in {models.environment}")
    context.log_event(
        dg.AssetObservation(
            asset_key="model_promotion",
            description=f"{action} of version {view.number}: {reason or 'no reason given'}",
            metadata={
                "action": action,
                "version": view.number,
                "status": view.status,
                "reason": reason or "(none given)",
                "acted_by": _actor(context),
                **registry_state_metadata(models),
            },
        )
    )


@dg.op
def promote_version(context: dg.OpExecutionContext, config: PromoteConfig, registry: ModelRegistryResource) -> None:
    """Promote a version to staging or production."""
    with registry.open() as models:
        view = models.promote(config.version, config.to, _actor(context), config.reason, config.force)
        _report(context, models, view, "force-promote" if config.force else "promote", config.reason)


@dg.op
def rollback_production(
    context: dg.OpExecutionContext, config: RollbackConfig, registry: ModelRegistryResource
) -> None:
    """Return production to an earlier production version."""
    with registry.open() as models:
        view = models.rollback(_actor(context), config.reason, config.to_version or None)
        _report(context, models, view, "rollback", config.reason)


@dg.op
def disable_version(context: dg.OpExecutionContext, config: DisableConfig, registry: ModelRegistryResource) -> None:
    """Disable a version: kept with its history, but never promoted or deployed."""
    with registry.open() as models:
        _report(
            context, models, models.disable(config.version, _actor(context), config.reason), "disable", config.reason
        )


@dg.op
def enable_version(context: dg.OpExecutionContext, config: EnableConfig, registry: ModelRegistryResource) -> None:
    """Enable a disabled version again."""
    with registry.open() as models:
        _report(context, models, models.enable(config.version, _actor(context), config.reason), "enable", config.reason)


@dg.graph
def promote_model() -> None:
    """Promote a registered version to staging or production (config: version, to, reason, force)."""
    promote_version()


@dg.graph
def rollback_model() -> None:
    """Roll production back to the previous production version or a named one."""
    rollback_production()


@dg.graph
def disable_model() -> None:
    """Disable a version so it cannot be promoted or deployed; refused for the production version."""
    disable_version()


@dg.graph
def enable_model() -> None:
    """Enable a disabled version again."""
    enable_version()


def _preset(op: str, version: int | None, values: dict) -> dict | None:
    """The job's launchpad config: `values` with `version` (None when there is no version to preset: Dagster takes
    a preset only whole, so the launchpad then asks for every required field)."""
    return None if version is None else {"ops": {op: {"config": {"version": version, **values}}}}


def registry_jobs(presets: RegistryPresets | None = None) -> list[dg.JobDefinition]:
    """The four registry jobs, each opening in the launchpad with the version it most likely acts on (`presets`);
    a reason left empty where one is required is refused when the run starts, naming the field."""
    presets = presets or RegistryPresets()
    rollback = {"ops": {"rollback_production": {"config": {"to_version": 0, "reason": ""}}}}
    return [
        promote_model.to_job(
            "promote_model_job",
            config=_preset("promote_version", presets.to_promote, {"to": "production", "reason": "", "force": False}),
        ),
        rollback_model.to_job("rollback_model_job", config=rollback),
        disable_model.to_job(
            "disable_model_job", config=_preset("disable_version", presets.to_disable, {"reason": ""})
        ),
        enable_model.to_job("enable_model_job", config=_preset("enable_version", presets.to_enable, {"reason": ""})),
    ]
