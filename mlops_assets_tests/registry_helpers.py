"""Registry fixtures shared by the registry tests: synthetic lineage for versions that need no training."""

from mlops_assets.lib.registry.gate import GateDecision
from mlops_assets.lib.registry.registry import ModelRegistry, NewVersion


def new_version(index: int, accuracy: float = 0.9) -> NewVersion:
    return NewVersion(
        model_name="image-classifier",
        model_tag=f"image-classifier:v{index}",
        bento_tag=f"image-classifier-service:b{index}",
        package_path=f"/artifacts/trained_model/{index}",
        weights_sha256=f"{index:064x}",
        plugin="cnn",
        labels=["cat", "dog"],
        data_version="d" * 64,
        dataset_size=100 + index,
        code_versions={"trained_model": "1"},
        git_commit="c" * 40,
        git_dirty=False,
        hyperparameters={"epochs": index},
        metrics={"accuracy": accuracy, "macro_f1": accuracy, "num_examples": 20, "per_class": []},
        training_seconds=1.5,
        training_device="cpu",
        parent_version=None,
        dagster_run_id=f"run-{index}",
    )


def registered(models: ModelRegistry, index: int, passed_gate: bool = True) -> int:
    number = models.register(new_version(index), actor="test").version.number
    models.record_gate(number, GateDecision(passed_gate, "test verdict"), f"run-{index}")
    return number
