"""Train a plug-in on validated arrays and package the result with its spec and history."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlops_assets.lib.data.validated_data import ValidatedDataset
from mlops_assets.lib.models.model_package import read_package_document, save_package
from mlops_assets.lib.models.plugins import resolve_plugin
from mlops_assets.lib.models.plugins.base import EpochCallback, EpochRecord, ModelPlugin, TrainSettings


@dataclass(frozen=True)
class TrainedModel:
    """Reference to a stored model package and how it was made."""

    directory: str
    plugin: str
    weights_sha256: str
    device: str
    training_seconds: float
    settings: dict[str, Any]
    params: dict[str, Any]
    history: tuple[dict, ...]
    data_version: str
    # The asset's own data version (derived from the validated data's version, code version and config).
    version: str = ""

    @property
    def final_epoch(self) -> dict:
        return self.history[-1]


@dataclass(frozen=True)
class FittedModel:
    """A plug-in trained in this process (not yet saved) and how the training went."""

    plugin: ModelPlugin
    history: tuple[EpochRecord, ...]
    seconds: float
    num_train: int
    num_val: int


def epoch_summary(record: EpochRecord, epochs: int) -> str:
    """One epoch as the run's log shows it, whichever process trained it."""
    return (
        f"epoch {record.epoch}/{epochs}: loss {record.train_loss:.4f}, "
        f"val_loss {record.val_loss:.4f}, val_accuracy {record.val_accuracy:.4f}"
    )


def fit_model(
    data: ValidatedDataset,
    plugin_name: str,
    params: Mapping[str, Any],
    settings: TrainSettings,
    on_epoch: EpochCallback | None = None,
) -> FittedModel:
    """Build the plug-in for the data's shape and train it with fixed seeds (one replica of it, under torchrun)."""
    train, validation = data.load_split("train"), data.load_split("val")
    plugin = resolve_plugin(plugin_name).build(data.image_spec.input_shape, len(data.labels), params, settings.device)
    started = time.perf_counter()
    history = plugin.train(train, validation, settings, on_epoch)
    return FittedModel(plugin, tuple(history), time.perf_counter() - started, len(train), len(validation))


def save_trained_model(
    fitted: FittedModel,
    data: ValidatedDataset,
    params: Mapping[str, Any],
    settings: TrainSettings,
    destination: Path,
    version: str = "",
    processes: int = 1,
) -> TrainedModel:
    """Write the package of `fitted` (trained on `data` by `processes` processes) to `destination`, atomically."""
    info = {
        # `processes` changes the weights (each replica's batch-norm statistics and dropout), so it is recorded
        # with the hyper-parameters.
        "settings": {**asdict(settings), "device": fitted.plugin.device, "processes": processes},
        "params": dict(params),
        "data_version": data.data_version,
        "training_seconds": fitted.seconds,
        "num_train": fitted.num_train,
        "num_val": fitted.num_val,
        "history": [asdict(record) for record in fitted.history],
        "version": version,
    }
    # The image policy goes with the model, so the service accepts and decodes exactly as training did.
    save_package(destination, fitted.plugin, data.image_spec, data.labels, info, policy=data.policy)
    return load_trained_model(destination)


def train_model(
    data: ValidatedDataset,
    plugin_name: str,
    params: Mapping[str, Any],
    settings: TrainSettings,
    destination: Path,
    on_epoch: EpochCallback | None = None,
    version: str = "",
) -> TrainedModel:
    """Build the plug-in for the data's shape, train it with fixed seeds in this process and save the package."""
    fitted = fit_model(data, plugin_name, params, settings, on_epoch)
    return save_trained_model(fitted, data, params, settings, destination, version)


def load_trained_model(directory: Path) -> TrainedModel:
    """Reopen a stored package's record (a cache hit: nothing is trained)."""
    document = read_package_document(directory)
    info = document["info"]
    return TrainedModel(
        directory=str(directory),
        plugin=document["plugin"],
        weights_sha256=document["weights_sha256"],
        device=info["settings"]["device"],
        training_seconds=info["training_seconds"],
        settings=info["settings"],
        params=info["params"],
        history=tuple(info["history"]),
        data_version=info["data_version"],
        version=info["version"],
    )
