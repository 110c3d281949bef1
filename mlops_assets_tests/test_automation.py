"""Declarative automation (the UI's path to rebuilds): an upstream change requests exactly its children."""

from pathlib import Path

import dagster as dg
import numpy as np

from mlops_assets.definitions import versioned_assets
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.bento_store import LocalBentoStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.registry import ModelRegistryResource
from mlops_assets_tests.conftest import write_png
from mlops_assets_tests.dataset_resources import dataset_store_under


def _requested(result) -> set[str]:
    return {evaluation.key.to_user_string() for evaluation in result.results if evaluation.true_subset.size > 0}


def test_new_raw_data_requests_the_chain_below_it_and_a_settled_graph_requests_nothing(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    for label in ("a", "b"):
        for index in range(10):
            write_png(tmp_path / "data" / label / f"{index}.png", rng.integers(0, 255, (6, 6)))
    assets = {asset.key.to_user_string(): asset for asset in versioned_assets()}
    resources = {
        "dataset": FolderDatasetSource(root=str(tmp_path / "data")),
        "artifacts": LocalArtifactStore(root=str(tmp_path / "artifacts")),
        "dataset_store": dataset_store_under(tmp_path),
        "bento_store": LocalBentoStore(),
        "registry": ModelRegistryResource(url=f"sqlite:///{tmp_path}/registry.db"),
    }
    defs = dg.Definitions(assets=list(assets.values()), resources=resources)
    with dg.instance_for_test() as instance:
        dg.materialize([assets["raw_images"], assets["validated_images"]], instance=instance, resources=resources)
        settled = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        settled = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled.cursor)
        assert _requested(settled) == set()

        write_png(tmp_path / "data" / "a" / "new.png", rng.integers(0, 255, (6, 6)))
        dg.materialize([assets["raw_images"]], instance=instance, resources=resources)
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=settled.cursor)
        # eager() requests the children of an updated asset together with their own children, in one tick.
        assert _requested(after) == {
            "validated_images",
            "trained_model",
            "model_evaluation",
            "bento",
            "model_promotion",
            "monitoring_baseline",
        }
