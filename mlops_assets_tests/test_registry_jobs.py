"""The registry jobs run through Dagster with launchpad-style config and report the new state."""

from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.definitions import build_definitions
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets_tests.registry_helpers import registered


def _failure(result: dg.ExecuteInProcessResult, op: str) -> str:
    """The error that failed `op`, as Dagster recorded it (the op's own exception, not Dagster's wrapper)."""
    return result.failure_data_for_node(op).error.cause.to_string()


def test_jobs_promote_roll_back_disable_and_enable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    monkeypatch.setenv("MLOPS_REGISTRY_URL", url)
    with ModelRegistry(url, "local") as models:
        one, two = registered(models, 1), registered(models, 2, passed_gate=False)
    defs = build_definitions()

    def run(job: str, op: str, config: dict):
        return defs.resolve_job_def(job).execute_in_process(
            run_config={"ops": {op: {"config": config}}}, raise_on_error=False
        )

    assert run("promote_model_job", "promote_version", {"version": one}).success
    refused = run("promote_model_job", "promote_version", {"version": two})
    assert not refused.success
    assert _failure(refused, "promote_version").startswith(
        f"mlops_assets.lib.registry.registry.RegistryError: Version {two} has not passed the promotion gate in local"
    )
    forced = run("promote_model_job", "promote_version", {"version": two, "force": True, "reason": "hotfix"})
    assert forced.success
    (observation,) = [e for e in forced.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    observed = observation.event_specific_data.asset_observation.metadata
    assert observed["production_version"].value == two
    # Why and who, as the audit log records them.
    assert (observed["reason"].value, observed["acted_by"].value) == ("hotfix", f"dagster run {forced.run_id}")
    assert run("rollback_model_job", "rollback_production", {"reason": "hotfix broke"}).success
    assert run("disable_model_job", "disable_version", {"version": two, "reason": "broken"}).success
    in_production = run("disable_model_job", "disable_version", {"version": one, "reason": "in production"})
    assert not in_production.success
    assert "roll back first" in _failure(in_production, "disable_version")
    assert run("enable_model_job", "enable_version", {"version": two}).success
    with ModelRegistry(url, "local") as models:
        assert models.state_summary() == {"production": [one], "archived": [two]}
        actions = [(e.version, e.action) for e in models.history()][2:]
        assert actions == [
            (1, "promote"),
            (1, "replaced"),
            (2, "force-promote"),
            (2, "rolled-back"),
            (1, "rollback"),
            (2, "disable"),
            (2, "enable"),
        ]
        assert models.history()[-3].reason == "hotfix broke" and models.history()[-3].actor.startswith("dagster run")


@pytest.mark.parametrize(
    ("job", "op", "config", "field"),
    [
        ("promote_model_job", "promote_version", {"version": 0}, "version"),
        ("promote_model_job", "promote_version", {"version": -2}, "version"),
        ("rollback_model_job", "rollback_production", {"to_version": -1}, "to_version"),
        ("disable_model_job", "disable_version", {"version": 1, "reason": ""}, "reason"),
        ("enable_model_job", "enable_version", {"version": 0}, "version"),
    ],
)
def test_out_of_range_registry_job_config_is_refused_naming_the_field_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, job: str, op: str, config: dict, field: str
) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    monkeypatch.setenv("MLOPS_REGISTRY_URL", url)
    with ModelRegistry(url, "local") as models:
        registered(models, 1)
        before = models.history()
    result = (
        build_definitions()
        .resolve_job_def(job)
        .execute_in_process(run_config={"ops": {op: {"config": config}}}, raise_on_error=False)
    )
    assert not result.success
    failure = result.failure_data_for_node(op).error.to_string()
    assert "validation error" in failure and f"\n{field}\n" in failure, failure
    with ModelRegistry(url, "local") as models:
        assert models.history() == before
