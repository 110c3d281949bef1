"""The gate and promotion inside Dagster: real training, real bentos, a real registry file, per-run policies."""

from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.cli_models import deployable_bento
from mlops_assets.defs.evaluation.assets import model_evaluation
from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.packaging.assets import bento
from mlops_assets.defs.promotion.assets import model_promotion
from mlops_assets.defs.promotion.checks import PROMOTION_GATE_CHECK, promotion_gate
from mlops_assets.defs.training.assets import trained_model
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.defs.validation.checks import validated_images_quality
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.bento_store import LocalBentoStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.registry import ModelRegistryResource
from mlops_assets_tests.dataset_resources import dataset_store_under

pytestmark = pytest.mark.e2e
ASSETS = [raw_images, validated_images, trained_model, model_evaluation, bento, model_promotion]
CHECKS = [validated_images_quality, promotion_gate]
MANUAL = "promotion: {floor: 0.3, tolerance: 0.01, per_class_margin: 1.0, staging_to_production: manual}\n"
LENIENT_AUTOMATIC = "promotion: {floor: 0.3, tolerance: 0.5, per_class_margin: 1.0, staging_to_production: automatic}\n"


class Pipeline:
    def __init__(self, dataset: Path, root: Path) -> None:
        self.dataset, self.root = dataset, root
        self.url = f"sqlite:///{root}/registry.db"

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
            raise_on_error=False,
        )

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.url, "local")


def _gate(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == PROMOTION_GATE_CHECK]
    return evaluation


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    events = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {key: value.value for key, value in events[-1].materialization.metadata.items()} if events else {}


def test_gate_sends_better_to_staging_keeps_worse_and_promotes_equal_within_tolerance(
    digits_subset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = Pipeline(digits_subset, tmp_path)

    first = pipeline.run(epochs=3, policy=MANUAL)
    assert first.success
    assert "first model" in _gate(first).metadata["reason"].value
    assert _metadata(first, "model_evaluation")["champion"].startswith("none")
    assert _metadata(first, "model_promotion")["status"] == "staging"
    with pipeline.registry() as models:
        models.promote(1, "production", actor="test", reason="deliberate first release")

    better = pipeline.run(epochs=8, policy=MANUAL)
    assert better.success, _gate(better).description
    assert "better" in _gate(better).metadata["reason"].value
    evaluation = _metadata(better, "model_evaluation")
    assert evaluation["champion"].startswith("version 1") and evaluation["accuracy_difference"] > 0
    promotion = _metadata(better, "model_promotion")
    assert (promotion["version"], promotion["status"], promotion["production_version"]) == (2, "staging", 1)

    worse = pipeline.run(epochs=2, policy=MANUAL)
    assert not worse.success
    assert not _gate(worse).passed and "stays candidate" in _gate(worse).description
    assert "worse by more than the tolerance" in _gate(worse).metadata["reason"].value
    assert "model_promotion" not in {e.asset_key.to_user_string() for e in worse.get_asset_materialization_events()}
    with pipeline.registry() as models:
        assert models.state_summary() == {"production": [1], "staging": [2], "candidate": [3]}
        assert "worse" in models.gate_decisions(3)[-1].reason
        assert models.version(3).parent_version == 1
        # Version 2 (in staging), not 3: a version once disabled is never promoted automatically again.
        models.disable(2, actor="test", reason="check that deployment refuses it")
        monkeypatch.setenv("MLOPS_REGISTRY_URL", pipeline.url)
        with pytest.raises(SystemExit, match="disabled"):
            deployable_bento(models.version(2).bento_tag)
        assert deployable_bento(None) == models.version(1).bento_tag
        models.enable(2, actor="test")

    # The same model again (same weights, so the same version 3) under a lenient policy: within tolerance, promoted.
    lenient = pipeline.run(epochs=2, policy=LENIENT_AUTOMATIC)
    assert lenient.success, _gate(lenient).description
    assert "within the tolerance" in _gate(lenient).metadata["reason"].value
    assert _metadata(lenient, "model_promotion")["production_version"] == 3
    with pipeline.registry() as models:
        assert models.state_summary() == {"archived": [1], "candidate": [2], "production": [3]}
        assert [(e.version, e.to_status) for e in models.history()][-3:] == [
            (3, "staging"),
            (1, "archived"),
            (3, "production"),
        ]
