"""The model plug-in interface: what the pipeline needs from a model, whatever framework it uses."""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from mlops_assets.lib.data.preprocessing import ImageSpec


@dataclass(frozen=True)
class ArrayDataset:
    """uint8 images [N, C, H, W], integer labels, and the spec that normalizes them into model inputs."""

    images: np.ndarray
    labels: np.ndarray
    spec: ImageSpec

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class TrainSettings:
    """Settings every plug-in honours; plug-in specific knobs travel in `params`."""

    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class EpochRecord:
    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float


EpochCallback = Callable[[EpochRecord], None]


class ModelPlugin(abc.ABC):
    """Build, train, predict, save and load a classifier over `ArrayDataset` images.

    The pipeline calls only these methods; inputs to `predict_proba` are float32 arrays produced by
    `mlops_assets.lib.data.preprocessing.normalize`, so training and serving see identical inputs.
    """

    name: ClassVar[str]
    # Packages the served model needs at run time; added to the bento's requirements.
    requirements: ClassVar[tuple[str, ...]] = ()

    @classmethod
    @abc.abstractmethod
    def build(cls, input_shape: tuple[int, int, int], num_classes: int, params: Mapping[str, Any], device: str) -> Self:
        """A fresh, untrained model for inputs of `input_shape` (C, H, W)."""

    @abc.abstractmethod
    def train(
        self,
        train: ArrayDataset,
        validation: ArrayDataset,
        settings: TrainSettings,
        on_epoch: EpochCallback | None = None,
    ) -> list[EpochRecord]:
        """Fit on `train`, report each epoch (with validation loss/accuracy) and return the history."""

    @abc.abstractmethod
    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        """Class probabilities [N, num_classes] for normalized float32 inputs [N, C, H, W]."""

    @abc.abstractmethod
    def save(self, directory: Path) -> None:
        """Write everything `load` needs into `directory` (which exists and is empty)."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: Path, device: str) -> Self:
        """Restore a model written by `save`."""

    @property
    def device(self) -> str:
        return "cpu"
