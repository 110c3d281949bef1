"""A version once rolled back out of production or disabled is never promoted automatically again; a person may,
with a reason."""

from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.cli import main
from mlops_assets.definitions import build_definitions
from mlops_assets.defs.evaluation.assets import model_evaluation
from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.packaging.assets import bento
from mlops_assets.defs.promotion.assets import model_promotion
from mlops_assets.defs.promotion.checks import PROMOTION_GATE_CHECK, promotion_gate
from mlops_assets.defs.training.assets import trained_model
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.defs.validation.checks import validated_images_quality
from mlops_assets.lib.registry.registry import ModelRegistry, RegistryError
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.bento_store import LocalBentoStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.registry import ModelRegistryResource
from mlops_assets_tests.dataset_resources import dataset_store_under
from mlops_assets_tests.registry_helpers import registered

ASSETS = [raw_images, validated_images, trained_model, model_evaluation, bento, model_promotion]
CHECKS = [validated_images_quality, promotion_gate]
MANUAL = "promotion: {floor: 0.3, tolerance: 0.5, per_class_margin: 1.0, staging_to_production: manual}\n"
AUTOMATIC = "promotion: {floor: 0.3, tolerance: 0.5, per_class_margin: 1.0, staging_to_production: automatic}\n"
NEVER_AGAIN = "because the pipeline never promotes a rolled-back or disabled version again"


@pytest.fixture
def models(tmp_path: Path) -> ModelRegistry:
    with ModelRegistry(f"sqlite:///{tmp_path}/registry.db", "local") as registry:
        yield registry


def _held(models: ModelRegistry, number: int, verb: str, actor: str, reason: str) -> str:
    entry = [e for e in models.history(number) if e.action in ("rolled-back", "disable")][-1]
    return f"version {number} was {verb} on {entry.at:%Y-%m-%d %H:%M:%S} UTC by {actor}: {reason}"


def test_a_rolled_back_version_is_refused_to_the_pipeline_and_needs_a_reason_from_a_person(
    models: ModelRegistry,
) -> None:
    one, two = registered(models, 1), registered(models, 2)
    models.promote(one, "production", actor="a")
    models.promote(two, "production", actor="a")
    models.rollback(actor="alice", reason="version 2 misreads sevens")
    hold = models.promotion_hold(two)
    assert (hold.version, hold.status, hold.action, hold.actor, hold.reason) == (
        2,
        "archived",
        "rolled-back",
        "alice",
        "version 2 misreads sevens",
    )
    held = _held(models, two, "rolled back", "alice", "version 2 misreads sevens")
    assert str(hold) == held
    assert hold.remedy == "promote it with `mlops models promote 2 --reason ...`"
    # Version 1 was replaced, then rolled back to: nothing holds it.
    assert models.promotion_hold(one) is None

    for target in ("staging", "production"):
        with pytest.raises(RegistryError) as refused:
            models.promote(two, target, actor="dagster run r", reason="passed the promotion gate", automatic=True)
        assert str(refused.value) == (
            f"{held}; the pipeline never promotes it again: promote it with `mlops models promote 2 --reason ...`."
        )
    with pytest.raises(RegistryError) as no_reason:
        models.promote(two, "production", actor="bob", reason="  ")
    assert str(no_reason.value) == (
        f"Promoting version 2 again needs a reason: {held}. Pass one with `mlops models promote 2 --reason ...` "
        "(or `reason` in promote_model_job's config)."
    )
    assert models.state_summary() == {"production": [1], "archived": [2]}

    assert models.promote(two, "production", actor="bob", reason="sevens fixed upstream").status == "production"
    last = models.history()[-1]
    assert (last.version, last.action, last.from_status, last.to_status, last.actor, last.reason) == (
        2,
        "promote",
        "archived",
        "production",
        "bob",
        "sevens fixed upstream",
    )
    # Never again means never: a deliberate promotion does not clear what happened.
    assert str(models.promotion_hold(two)) == held


def test_a_disabled_version_stays_held_after_it_is_enabled(models: ModelRegistry) -> None:
    one = registered(models, 1)
    models.disable(one, actor="bob", reason="trained on a mislabelled folder")
    held = _held(models, one, "disabled", "bob", "trained on a mislabelled folder")
    hold = models.promotion_hold(one)
    assert (str(hold), hold.status) == (held, "disabled")
    assert hold.remedy == (
        "enable it (`mlops models enable 1`), then promote it with `mlops models promote 1 --reason ...`"
    )
    models.enable(one, actor="bob")
    hold = models.promotion_hold(one)
    assert (str(hold), hold.status, hold.remedy) == (
        held,
        "candidate",
        "promote it with `mlops models promote 1 --reason ...`",
    )
    with pytest.raises(RegistryError, match="the pipeline never promotes it again"):
        models.promote(one, "staging", actor="dagster run r", reason="passed the promotion gate", automatic=True)
    with pytest.raises(RegistryError, match="^Promoting version 1 again needs a reason: version 1 was disabled on "):
        models.promote(one, "production", actor="bob")
    assert models.promote(one, "production", actor="bob", reason="folder relabelled").status == "production"


def test_the_launchpad_promote_job_needs_a_reason_for_a_held_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    monkeypatch.setenv("MLOPS_REGISTRY_URL", url)
    with ModelRegistry(url, "local") as models:
        one, two = registered(models, 1), registered(models, 2)
        models.promote(one, "production", actor="a")
        models.promote(two, "production", actor="a")
        models.rollback(actor="alice", reason="broken")
    job = build_definitions().resolve_job_def("promote_model_job")

    def promote(config: dict) -> dg.ExecuteInProcessResult:
        return job.execute_in_process(run_config={"ops": {"promote_version": {"config": config}}}, raise_on_error=False)

    refused = promote({"version": two})
    assert not refused.success
    (failure,) = [e for e in refused.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.event_specific_data.error.cause.message
    assert "RegistryError: Promoting version 2 again needs a reason: version 2 was rolled back on " in message
    assert "by alice: broken" in message
    assert promote({"version": two, "reason": "fixed"}).success
    with ModelRegistry(url, "local") as models:
        assert models.state_summary() == {"archived": [1], "production": [2]}
        assert models.history()[-1].reason == "fixed"


class Pipeline:
    """The real asset chain on a small dataset, with its own registry file, artifacts and instance (for the logs)."""

    def __init__(self, dataset: Path, root: Path) -> None:
        self.dataset, self.root = dataset, root
        self.url = f"sqlite:///{root}/registry.db"
        self.instance = dg.DagsterInstance.ephemeral()

    def run(self, epochs: int, policy: str) -> dg.ExecuteInProcessResult:
        (self.root / "local.yaml").write_text(policy)
        return dg.materialize(
            [*ASSETS, *CHECKS],
            resources={
                "dataset": FolderDatasetSource(root=str(self.dataset)),
                "artifacts": LocalArtifactStore(root=str(self.root / "artifacts")),
                "dataset_store": dataset_store_under(self.root),
                "bento_store": LocalBentoStore(),
                "registry": ModelRegistryResource(url=self.url, policy_file=str(self.root / "local.yaml")),
            },
            run_config={"ops": {"trained_model": {"config": {"epochs": epochs}}}},
            instance=self.instance,
            raise_on_error=False,
        )

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.url, "local")

    def logged(self, result: dg.ExecuteInProcessResult) -> list[str]:
        return [entry.user_message for entry in self.instance.all_logs(result.run_id) if entry.dagster_event is None]


def _promotion(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = [
        e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "model_promotion"
    ]
    return {key: value.value for key, value in event.materialization.metadata.items()}


def _bento_registry_outcome(result: dg.ExecuteInProcessResult) -> str:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "bento"]
    return event.materialization.metadata["registration_when_built"].value


def _gate_passed(result: dg.ExecuteInProcessResult) -> bool:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == PROMOTION_GATE_CHECK]
    return evaluation.passed


def _cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """`mlops models ...` in this process: exit code, stdout, stderr (the pipeline's own logs left out)."""
    capsys.readouterr()
    code = main(["models", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.e2e
def test_rebuilding_a_rolled_back_version_leaves_it_archived_and_says_why(
    digits_subset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pipeline = Pipeline(digits_subset, tmp_path)
    assert _promotion(pipeline.run(epochs=3, policy=AUTOMATIC))["production_version"] == 1
    assert _promotion(pipeline.run(epochs=8, policy=AUTOMATIC))["production_version"] == 2
    with pipeline.registry() as models:
        models.rollback(actor="alice", reason="version 2 misreads sevens")
        held = _held(models, 2, "rolled back", "alice", "version 2 misreads sevens")
        history = models.history()

    # The exact version 2 again: same data, code and config, so the same model, recognised as version 2.
    again = pipeline.run(epochs=8, policy=AUTOMATIC)
    assert again.success
    assert _bento_registry_outcome(again) == "the same model is already version 2 (archived); not registered again"
    assert _gate_passed(again)
    promotion = _promotion(again)
    outcome = f"{held}; it stays archived in local {NEVER_AGAIN}: promote it with `mlops models promote 2 --reason ...`"
    assert (promotion["version"], promotion["status"], promotion["production_version"]) == (2, "archived", 1)
    assert (promotion["held_back"], promotion["outcome"]) == (held, outcome)
    assert outcome in pipeline.logged(again)
    with pipeline.registry() as models:
        assert models.state_summary() == {"production": [1], "archived": [2]}
        assert models.history() == history

    monkeypatch.setenv("MLOPS_REGISTRY_URL", pipeline.url)
    code, out, err = _cli(capsys, "promote", "2")
    assert (code, out) == (1, "")
    assert err == (
        f"error: Promoting version 2 again needs a reason: {held}. Pass one with `mlops models promote 2 --reason ...` "
        "(or `reason` in promote_model_job's config).\n"
    )
    assert _cli(capsys, "promote", "2", "--reason", "sevens fixed upstream") == (
        0,
        "Version 2 is now in production.\n",
        "",
    )
    with pipeline.registry() as models:
        assert models.state_summary() == {"production": [2], "archived": [1]}
        last = models.history()[-1]
        assert (last.version, last.action, last.to_status, last.reason) == (
            2,
            "promote",
            "production",
            "sevens fixed upstream",
        )
        assert last.actor.endswith("(mlops cli)")


@pytest.mark.e2e
def test_rebuilding_a_disabled_then_enabled_version_does_not_promote_it(
    digits_subset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pipeline = Pipeline(digits_subset, tmp_path)
    assert _promotion(pipeline.run(epochs=3, policy=MANUAL))["status"] == "staging"
    with pipeline.registry() as models:
        models.disable(1, actor="bob", reason="trained on a mislabelled folder")
        held = _held(models, 1, "disabled", "bob", "trained on a mislabelled folder")

    # Still disabled: judged by the gate, but not promoted, and the run succeeds.
    disabled = pipeline.run(epochs=3, policy=AUTOMATIC)
    assert disabled.success and _gate_passed(disabled)
    assert _promotion(disabled)["outcome"] == (
        f"{held}; it stays disabled in local {NEVER_AGAIN}: enable it (`mlops models enable 1`), then promote it "
        "with `mlops models promote 1 --reason ...`"
    )

    with pipeline.registry() as models:
        models.enable(1, actor="bob")
    enabled = pipeline.run(epochs=3, policy=AUTOMATIC)
    assert enabled.success and _gate_passed(enabled)
    promotion = _promotion(enabled)
    assert (promotion["status"], promotion["production_version"], promotion["staging_version"]) == (
        "candidate",
        "none",
        "none",
    )
    assert promotion["outcome"] == (
        f"{held}; it stays candidate in local {NEVER_AGAIN}: promote it with `mlops models promote 1 --reason ...`"
    )
    assert promotion["outcome"] in pipeline.logged(enabled)

    monkeypatch.setenv("MLOPS_REGISTRY_URL", pipeline.url)
    code, _, err = _cli(capsys, "promote", "1")
    assert code == 1 and err.startswith(f"error: Promoting version 1 again needs a reason: {held}. ")
    assert _cli(capsys, "promote", "1", "--reason", "folder relabelled")[:2] == (0, "Version 1 is now in production.\n")
    with pipeline.registry() as models:
        assert models.state_summary() == {"production": [1]}
