"""The pipeline's promotion re-checks, in its transaction, that production is still the model its gate compared with."""

from pathlib import Path

import pytest

from mlops_assets.lib.registry.registry import ModelRegistry, RegistryError
from mlops_assets_tests.registry_helpers import registered

STALE = (
    "production changed since the gate; rerun (`mlops run`), so that the gate compares it with what is in production "
    "now"
)


@pytest.fixture
def models(tmp_path: Path) -> ModelRegistry:
    with ModelRegistry(f"sqlite:///{tmp_path}/registry.db", "local") as registry:
        yield registry


def _moves(models: ModelRegistry) -> list[tuple]:
    return [(e.version, e.action, e.from_status, e.to_status, e.actor, e.reason) for e in models.history()]


def test_a_version_gated_against_the_current_production_goes_to_staging_then_production(
    models: ModelRegistry,
) -> None:
    one, two = registered(models, 1), registered(models, 2)
    first = models.promote_after_gate(one, None, to_production=True, actor="run-1")
    assert (first.version.number, first.version.status, first.hold) == (1, "production", None)
    second = models.promote_after_gate(two, one, to_production=True, actor="run-2")
    assert (second.version.status, second.hold) == ("production", None)
    assert models.state_summary() == {"archived": [1], "production": [2]}
    automatic = "staging_to_production is automatic in local"
    assert _moves(models)[-5:] == [
        (1, "promote", "candidate", "staging", "run-1", "passed the promotion gate"),
        (1, "promote", "staging", "production", "run-1", automatic),
        (2, "promote", "candidate", "staging", "run-2", "passed the promotion gate"),
        (1, "replaced", "production", "archived", "run-2", "replaced by version 2"),
        (2, "promote", "staging", "production", "run-2", automatic),
    ]


def test_production_that_moved_after_the_gate_refuses_the_promotion(models: ModelRegistry) -> None:
    one, two, three = registered(models, 1), registered(models, 2), registered(models, 3)
    models.promote_after_gate(one, None, to_production=True, actor="run-1")
    # Run 3's gate compared version 3 with version 1; meanwhile run 2 promoted version 2.
    models.promote_after_gate(two, one, to_production=True, actor="run-2")
    history = models.history()
    with pytest.raises(RegistryError) as refused:
        models.promote_after_gate(three, one, to_production=True, actor="run-3")
    assert str(refused.value) == (
        f"Version 3 was not promoted: {STALE}. The gate compared it with production version 1; version 2 is in "
        "production in local now."
    )
    # Nothing moved, in staging either.
    assert models.history() == history
    assert models.state_summary() == {"archived": [1], "production": [2], "candidate": [3]}


def test_a_first_model_gated_with_no_production_is_refused_once_another_run_promoted_one(
    models: ModelRegistry,
) -> None:
    one, two = registered(models, 1), registered(models, 2)
    models.promote_after_gate(two, None, to_production=False, actor="run-2")
    models.promote(two, "production", actor="alice")
    with pytest.raises(RegistryError) as refused:
        models.promote_after_gate(one, None, to_production=False, actor="run-1")
    assert str(refused.value) == (
        f"Version 1 was not promoted: {STALE}. The gate compared it with no production model; version 2 is in "
        "production in local now."
    )
    assert models.state_summary() == {"candidate": [1], "production": [2]}


def test_the_same_model_promoted_by_another_run_first_is_not_an_error(models: ModelRegistry) -> None:
    one = registered(models, 1)
    # Two runs built the same model, both gated it with nothing in production; one of them promoted it.
    models.promote_after_gate(one, None, to_production=True, actor="run-a")
    history = models.history()
    late = models.promote_after_gate(one, None, to_production=True, actor="run-b")
    assert (late.version.status, late.hold) == ("production", None)
    assert models.history() == history
    # With a manual policy the late run finds it in staging, as wanted, and leaves it there.
    two = registered(models, 2)
    models.promote_after_gate(two, one, to_production=False, actor="run-c")
    staged = models.promote_after_gate(two, one, to_production=False, actor="run-d")
    assert (staged.version.status, staged.hold) == ("staging", None)
    assert [e.actor for e in models.history()][-1] == "run-c"


def test_a_held_version_is_left_where_it_is_and_the_hold_returned(models: ModelRegistry) -> None:
    one, two = registered(models, 1), registered(models, 2)
    models.promote(one, "production", actor="a")
    models.promote(two, "production", actor="a")
    models.rollback(actor="alice", reason="version 2 misreads sevens")
    held = models.promote_after_gate(two, one, to_production=True, actor="run-2")
    assert (held.version.status, held.hold.action, held.hold.actor) == ("archived", "rolled-back", "alice")
    assert models.state_summary() == {"production": [1], "archived": [2]}


def test_a_candidate_whose_latest_gate_failed_is_refused(models: ModelRegistry) -> None:
    number = registered(models, 1, passed_gate=False)
    with pytest.raises(RegistryError) as refused:
        models.promote_after_gate(number, None, to_production=True, actor="run-1")
    assert str(refused.value) == (
        "Version 1 has not passed the promotion gate in local (`mlops models show 1` says why); pass --force with "
        "--reason to promote it anyway."
    )
