"""Train a plug-in on validated arrays and package the result with its spec and history."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlops_assets.lib.model_package import save_package
from mlops_assets.lib.plugins import resolve_plugin
from mlops_assets.lib.plugins.base import EpochCallback, TrainSettings
from mlops_assets.lib.validated_data import ValidatedDataset


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

    @property
    def final_epoch(self) -> dict:
        return self.history[-1]


def train_model(
    data: ValidatedDataset,
    plugin_name: str,
    params: Mapping[str, Any],
    settings: TrainSettings,
    destination: Path,
    on_epoch: EpochCallback | None = None,
) -> TrainedModel:
    """Build the plug-in for the data's shape, train it with fixed seeds and save the package."""
    train, validation = data.load_split("train"), data.load_split("val")
    plugin = resolve_plugin(plugin_name).build(data.image_spec.input_shape, len(data.labels), params, settings.device)
    started = time.perf_counter()
    history = plugin.train(train, validation, settings, on_epoch)
    seconds = time.perf_counter() - started
    resolved = TrainSettings(**{**asdict(settings), "device": plugin.device})
    info = {
        "settings": asdict(resolved),
        "params": dict(params),
        "data_version": data.data_version,
        "training_seconds": seconds,
        "num_train": len(train),
        "num_val": len(validation),
    }
    weights = save_package(destination, plugin, data.image_spec, data.labels, info)
    return TrainedModel(
        directory=str(destination),
        plugin=plugin.name,
        weights_sha256=weights,
        device=plugin.device,
        training_seconds=seconds,
        settings=asdict(resolved),
        params=dict(params),
        history=tuple(asdict(record) for record in history),
        data_version=data.data_version,
    )
