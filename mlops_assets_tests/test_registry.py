"""Registry transitions on a real SQLite file: gate, promotion, rollback, disable/enable, nothing deleted."""

import re
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from mlops_assets.cli import build_parser
from mlops_assets.definitions import build_definitions
from mlops_assets.lib.registry.registry import ModelRegistry, RegistryError
from mlops_assets_tests.registry_helpers import new_version, registered


@pytest.fixture
def models(tmp_path: Path) -> ModelRegistry:
    with ModelRegistry(f"sqlite:///{tmp_path}/registry.db", "local") as registry:
        yield registry


def _transitions(models: ModelRegistry) -> list[tuple]:
    return [(e.version, e.action, e.from_status, e.to_status) for e in models.history()]


def test_registration_records_lineage_and_the_same_model_is_one_version(models: ModelRegistry) -> None:
    first = models.register(new_version(1), actor="test")
    again = models.register(new_version(1), actor="test")
    second = models.register(new_version(2), actor="test")
    assert (first.created, again.created, second.created) == (True, False, True)
    assert [first.version.number, again.version.number, second.version.number] == [1, 1, 2]
    view = models.version(2)
    assert view.status == "candidate"
    assert (view.dataset_size, view.hyperparameters, view.git_commit) == (102, {"epochs": 2}, "c" * 40)
    assert view.registered_by == "test"


def test_a_candidate_that_failed_the_gate_needs_force_and_a_reason(models: ModelRegistry) -> None:
    number = registered(models, 1, passed_gate=False)
    with pytest.raises(RegistryError, match="has not passed the promotion gate"):
        models.promote(number, "staging", actor="alice")
    with pytest.raises(RegistryError, match="needs a reason"):
        models.promote(number, "staging", actor="alice", force=True)
    assert models.version(number).status == "candidate"
    models.promote(number, "staging", actor="alice", reason="customer demo needs it", force=True)
    entry = models.history()[-1]
    assert (entry.action, entry.actor, entry.reason, entry.to_status) == (
        "force-promote",
        "alice",
        "customer demo needs it",
        "staging",
    )


def test_rollback_restores_the_previous_version_and_history_is_in_order(models: ModelRegistry) -> None:
    one, two, three = (registered(models, index) for index in (1, 2, 3))
    models.promote(one, "production", actor="a")
    models.promote(two, "staging", actor="a")
    models.promote(two, "production", actor="a")
    models.promote(three, "production", actor="a")
    assert models.rollback(actor="b", reason="v3 misbehaves").number == two
    assert models.production().number == two
    assert models.rollback(actor="b", to_number=one).number == one
    assert models.state_summary() == {"production": [one], "archived": [two, three]}
    assert _transitions(models) == [
        (1, "register", None, "candidate"),
        (2, "register", None, "candidate"),
        (3, "register", None, "candidate"),
        (1, "promote", "candidate", "production"),
        (2, "promote", "candidate", "staging"),
        (1, "replaced", "production", "archived"),
        (2, "promote", "staging", "production"),
        (2, "replaced", "production", "archived"),
        (3, "promote", "candidate", "production"),
        (3, "rolled-back", "production", "archived"),
        (2, "rollback", "archived", "production"),
        (2, "rolled-back", "production", "archived"),
        (1, "rollback", "archived", "production"),
    ]
    assert models.history()[-1].actor == "b"


def test_rollback_refuses_when_there_is_nothing_earlier(models: ModelRegistry) -> None:
    with pytest.raises(RegistryError, match="Nothing is in production"):
        models.rollback(actor="a")
    one, two = registered(models, 1), registered(models, 2)
    models.promote(one, "production", actor="a")
    with pytest.raises(RegistryError, match="only version ever in production"):
        models.rollback(actor="a")
    with pytest.raises(RegistryError, match="never in production"):
        models.rollback(actor="a", to_number=two)
    assert models.production().number == one


def test_disabled_versions_refuse_promotion_until_enabled(models: ModelRegistry) -> None:
    one, two = registered(models, 1), registered(models, 2)
    models.promote(one, "production", actor="a")
    with pytest.raises(RegistryError, match="roll back first"):
        models.disable(one, actor="a", reason="bad")
    with pytest.raises(RegistryError, match="needs a reason"):
        models.disable(two, actor="a", reason=" ")
    models.disable(two, actor="a", reason="trained on mislabelled data")
    for target in ("staging", "production"):
        with pytest.raises(RegistryError, match="is disabled"):
            models.promote(two, target, actor="a", reason="try", force=True)
    assert models.version(two).status == "disabled"
    assert models.enable(two, actor="a").status == "candidate"
    with pytest.raises(RegistryError, match="Promoting version 2 again needs a reason: version 2 was disabled on "):
        models.promote(two, "production", actor="a")
    assert models.promote(two, "production", actor="a", reason="relabelled data checked").status == "production"


def test_a_version_disabled_after_production_is_skipped_by_rollback(models: ModelRegistry) -> None:
    one, two, three = (registered(models, index) for index in (1, 2, 3))
    for number in (one, two, three):
        models.promote(number, "production", actor="a")
    models.disable(two, actor="a", reason="leaks data")
    assert models.rollback(actor="a").number == one


def test_the_database_refuses_deletes_rewrites_and_a_second_production_version(models: ModelRegistry) -> None:
    one, two = registered(models, 1), registered(models, 2)
    models.promote(one, "production", actor="a")
    refused = "the model registry never deletes or rewrites history"
    statements = {
        "DELETE FROM model_versions": f"{refused} (DELETE on model_versions)",
        "DELETE FROM version_states": f"{refused} (DELETE on version_states)",
        "DELETE FROM audit_log": f"{refused} (DELETE on audit_log)",
        "DELETE FROM gate_decisions": f"{refused} (DELETE on gate_decisions)",
        "UPDATE audit_log SET reason = 'rewritten'": f"{refused} (UPDATE on audit_log)",
        "UPDATE model_versions SET metrics = '{}'": f"{refused} (UPDATE on model_versions)",
        # The partial unique index: a second production version in the environment.
        "UPDATE version_states SET status = 'production'": "UNIQUE constraint failed: version_states.environment",
    }
    for statement, message in statements.items():
        with pytest.raises(IntegrityError, match=re.escape(message)), models.engine.begin() as connection:
            connection.execute(text(statement))
    assert len(models.versions()) == 2 and len(models.history()) == 3
    assert models.production().number == one and models.version(two).status == "candidate"


def test_no_interface_offers_delete(capsys: pytest.CaptureFixture[str]) -> None:
    assert [name for name in dir(ModelRegistry) if "delete" in name or "remove" in name] == []
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["models", "delete", "1"])
    assert refused.value.code == 2
    assert "invalid choice: 'delete'" in capsys.readouterr().err
    jobs = [job.name for job in build_definitions().jobs]
    assert {"promote_model_job", "rollback_model_job", "disable_model_job", "enable_model_job"} <= set(jobs)
    assert [name for name in jobs if "delete" in name] == []
