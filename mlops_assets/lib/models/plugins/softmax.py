"""A second plug-in with no deep-learning framework: multinomial logistic regression in NumPy.

It exists to keep the interface honest: the assets drive it exactly as they drive the CNN.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np

from mlops_assets.lib.data.preprocessing import normalize
from mlops_assets.lib.models.plugins.base import (
    ArrayDataset,
    EpochCallback,
    EpochRecord,
    ModelPlugin,
    ParamRange,
    TrainSettings,
)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


class SoftmaxRegressionPlugin(ModelPlugin):
    """Linear classifier on flattened pixels, trained by mini-batch gradient descent with L2."""

    name = "softmax"
    requirements = ()
    param_ranges = {"l2": ParamRange(low=0)}  # weight decay of the L2 penalty

    def __init__(self, weights: np.ndarray, bias: np.ndarray, l2: float) -> None:
        self._weights = weights
        self._bias = bias
        self._l2 = l2

    @classmethod
    def build(cls, input_shape: tuple[int, int, int], num_classes: int, params: Mapping[str, Any], device: str) -> Self:
        features = int(np.prod(input_shape))
        l2 = float(cls.checked_params(params).get("l2", 1e-4))
        return cls(np.zeros((features, num_classes)), np.zeros(num_classes), l2)

    def _loss_accuracy(self, data: ArrayDataset) -> tuple[float, float]:
        probabilities = self.predict_proba(normalize(data.images, data.spec))
        picked = probabilities[np.arange(len(data)), data.labels]
        return float(-np.log(np.maximum(picked, 1e-12)).mean()), float(
            (probabilities.argmax(axis=1) == data.labels).mean()
        )

    def train(
        self,
        train: ArrayDataset,
        validation: ArrayDataset,
        settings: TrainSettings,
        on_epoch: EpochCallback | None = None,
    ) -> list[EpochRecord]:
        rng = np.random.default_rng(settings.seed)
        num_classes = self._bias.shape[0]
        self._weights = rng.normal(0, 0.01, self._weights.shape)
        self._bias = np.zeros(num_classes)
        history: list[EpochRecord] = []
        for epoch in range(1, settings.epochs + 1):
            started = time.perf_counter()
            order = rng.permutation(len(train))
            for start in range(0, len(order), settings.batch_size):
                index = order[start : start + settings.batch_size]
                inputs = normalize(train.images[index], train.spec).reshape(len(index), -1)
                gradient = _softmax(inputs @ self._weights + self._bias)
                gradient[np.arange(len(index)), train.labels[index]] -= 1
                gradient /= len(index)
                step = settings.learning_rate * 100  # plain SGD wants a larger step than Adam's default
                self._weights -= step * (inputs.T @ gradient + self._l2 * self._weights)
                self._bias -= step * gradient.sum(axis=0)
            train_loss, train_accuracy = self._loss_accuracy(train)
            val_loss, val_accuracy = self._loss_accuracy(validation)
            record = EpochRecord(
                epoch, train_loss, train_accuracy, val_loss, val_accuracy, time.perf_counter() - started
            )
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
        return history

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        flat = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
        return _softmax(flat @ self._weights + self._bias).astype(np.float32)

    def save(self, directory: Path) -> None:
        np.savez(directory / "softmax.npz", weights=self._weights, bias=self._bias)
        (directory / "softmax.json").write_text(json.dumps({"l2": self._l2}))

    @classmethod
    def load(cls, directory: Path, device: str) -> Self:
        arrays = np.load(directory / "softmax.npz")
        config = json.loads((directory / "softmax.json").read_text())
        return cls(arrays["weights"], arrays["bias"], float(config["l2"]))
