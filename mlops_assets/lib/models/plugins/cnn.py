"""Reference plug-in: a small convolutional image classifier in PyTorch (CUDA when present)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from mlops_assets.lib.data.preprocessing import normalize
from mlops_assets.lib.models.plugins.base import ArrayDataset, EpochCallback, EpochRecord, ModelPlugin, TrainSettings

DEFAULT_PARAMS = {"width": 32, "dropout": 0.25}
_CONFIG_FILE = "cnn.json"
_WEIGHTS_FILE = "weights.pt"


def resolve_device(requested: str) -> str:
    """'auto' picks CUDA when a GPU is visible; an explicit 'cuda' without one is an error, not a silent fallback."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA GPU is visible; use 'auto' or 'cpu'.")
    return requested


def _network(input_shape: tuple[int, int, int], num_classes: int, width: int, dropout: float) -> nn.Module:
    channels, height, width_px = input_shape
    # Pool only while the feature map stays at least 4 px, so tiny inputs (8x8 digits) keep spatial detail.
    pools = 0
    side = min(height, width_px)
    while side // 2 >= 4 and pools < 3:
        side //= 2
        pools += 1
    layers: list[nn.Module] = []
    in_channels = channels
    for stage in range(max(pools, 1)):
        out_channels = width * (2**stage)
        layers += [
            nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
            nn.ReLU(inplace=True),
        ]
        if stage < pools:
            layers.append(nn.MaxPool2d(2))
        in_channels = out_channels
    layers += [
        nn.AdaptiveAvgPool2d((4, 4)),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(in_channels * 16, 128),
        nn.ReLU(inplace=True),
        nn.Linear(128, num_classes),
    ]
    return nn.Sequential(*layers)


class SmallCNNPlugin(ModelPlugin):
    """A compact CNN whose depth adapts to the input size; trained with Adam and cross-entropy."""

    name = "cnn"
    requirements = ("torch==2.13.0",)

    def __init__(self, network: nn.Module, config: dict[str, Any], device: str) -> None:
        self._network = network.to(device)
        self._config = config
        self._device = device

    @property
    def device(self) -> str:
        return self._device

    @classmethod
    def build(cls, input_shape: tuple[int, int, int], num_classes: int, params: Mapping[str, Any], device: str) -> Self:
        unknown = set(params) - set(DEFAULT_PARAMS)
        if unknown:
            raise ValueError(f"Unknown cnn parameters {sorted(unknown)}; known: {sorted(DEFAULT_PARAMS)}.")
        merged = {**DEFAULT_PARAMS, **params}
        config = {
            "input_shape": list(input_shape),
            "num_classes": num_classes,
            "width": int(merged["width"]),
            "dropout": float(merged["dropout"]),
        }
        return cls(cls._make_network(config), config, resolve_device(device))

    @staticmethod
    def _make_network(config: dict[str, Any]) -> nn.Module:
        return _network(tuple(config["input_shape"]), config["num_classes"], config["width"], config["dropout"])

    def _batches(self, data: ArrayDataset, batch_size: int, order: np.ndarray):
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            inputs = torch.from_numpy(normalize(data.images[index], data.spec)).to(self._device)
            targets = torch.from_numpy(data.labels[index].astype(np.int64)).to(self._device)
            yield inputs, targets

    def _evaluate(self, data: ArrayDataset, batch_size: int) -> tuple[float, float]:
        self._network.eval()
        loss_sum, correct = 0.0, 0
        with torch.inference_mode():
            for inputs, targets in self._batches(data, batch_size, np.arange(len(data))):
                logits = self._network(inputs)
                loss_sum += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
                correct += (logits.argmax(dim=1) == targets).sum().item()
        count = max(len(data), 1)
        return loss_sum / count, correct / count

    def train(
        self,
        train: ArrayDataset,
        validation: ArrayDataset,
        settings: TrainSettings,
        on_epoch: EpochCallback | None = None,
    ) -> list[EpochRecord]:
        torch.manual_seed(settings.seed)
        # Bit-identical weights on CPU for the same data, code and seed.
        torch.use_deterministic_algorithms(True, warn_only=True)
        self._network = self._make_network(self._config).to(self._device)
        optimizer = torch.optim.Adam(self._network.parameters(), lr=settings.learning_rate)
        shuffler = np.random.default_rng(settings.seed)
        history: list[EpochRecord] = []
        for epoch in range(1, settings.epochs + 1):
            started = time.perf_counter()
            self._network.train()
            loss_sum, correct = 0.0, 0
            for inputs, targets in self._batches(train, settings.batch_size, shuffler.permutation(len(train))):
                optimizer.zero_grad(set_to_none=True)
                logits = self._network(inputs)
                loss = nn.functional.cross_entropy(logits, targets)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(targets)
                correct += (logits.argmax(dim=1) == targets).sum().item()
            val_loss, val_accuracy = self._evaluate(validation, settings.batch_size)
            record = EpochRecord(
                epoch=epoch,
                train_loss=loss_sum / len(train),
                train_accuracy=correct / len(train),
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                seconds=time.perf_counter() - started,
            )
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
        return history

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        self._network.eval()
        with torch.inference_mode():
            logits = self._network(torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(self._device))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def save(self, directory: Path) -> None:
        (directory / _CONFIG_FILE).write_text(json.dumps(self._config, indent=1))
        state = {key: value.detach().cpu() for key, value in self._network.state_dict().items()}
        torch.save(state, directory / _WEIGHTS_FILE)

    @classmethod
    def load(cls, directory: Path, device: str) -> Self:
        config = json.loads((directory / _CONFIG_FILE).read_text())
        resolved = resolve_device(device)
        network = cls._make_network(config)
        network.load_state_dict(torch.load(directory / _WEIGHTS_FILE, map_location="cpu", weights_only=True))
        network.eval()
        return cls(network, config, resolved)
