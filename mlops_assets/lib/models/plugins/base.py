"""The model plug-in interface: what the pipeline needs from a model, whatever framework it uses."""

from __future__ import annotations

import abc
import math
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
class ParamRange:
    """What one numeric plug-in parameter accepts: an integer or any finite number, within optional bounds (`low`
    inclusive; `high` inclusive unless `high_open`)."""

    integer: bool = False
    low: float | None = None
    high: float | None = None
    high_open: bool = False
    note: str = ""  # what is allowed, in words, where the bounds alone do not say it well

    def accepts(self, value: Any) -> bool:
        # bool is an int in Python, but `true` is not a number a user meant; run config turns integers into floats.
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.integer and not float(value).is_integer():
            return False
        if self.low is not None and value < self.low:
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def allowed(self) -> str:
        if self.note:
            return self.note
        kind = "an integer" if self.integer else "a number"
        low, high = (f"{bound:g}" if bound is not None else None for bound in (self.low, self.high))
        if low is not None and high is not None:
            return f"{kind} >= {low} and < {high}" if self.high_open else f"{kind} from {low} to {high}"
        if low is not None:
            return f"{kind} >= {low}"
        if high is not None:
            return f"{kind} {'<' if self.high_open else '<='} {high}"
        return kind


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
    # Whether `train` can run as one of several processes started by torchrun (training config `processes` > 1).
    # Such a plug-in finds torch.distributed's default process group initialized when `train` is called, sees the
    # whole splits in every process, trains on its own share of every batch, keeps its replica in step with the
    # others, and returns the same history in every process; only rank 0's model is saved.
    data_parallel: ClassVar[bool] = False
    # The plug-in's own parameters (training config `plugin_params`) by name; None: any names, each a finite number.
    param_ranges: ClassVar[Mapping[str, ParamRange] | None] = None
    # Whether `predict_with_embedding` returns an embedding (monitoring tests drift on it).
    has_embedding: ClassVar[bool] = False

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> list[str]:
        """One phrase per unusable parameter, `name = value: what is allowed` (unknown names, types, ranges); [] when
        all can be used. Checked before a run starts and again by `build`."""
        ranges = cls.param_ranges
        found = []
        for name, value in params.items():
            if ranges is not None and name not in ranges:
                found.append(f"{name} = {value!r}: unknown setting (known: {', '.join(sorted(ranges)) or 'none'})")
                continue
            expected = ranges[name] if ranges is not None else ParamRange()
            if not expected.accepts(value):
                found.append(f"{name} = {value!r}: expected {expected.allowed()}")
        return found

    @classmethod
    def checked_params(cls, params: Mapping[str, Any]) -> Mapping[str, Any]:
        """`params` when `check_params` finds nothing; else a ConfigError naming each parameter (for `build`)."""
        from mlops_assets.lib.settings_validation import ConfigError

        found = cls.check_params(params)
        if found:
            raise ConfigError(f"plugin_params of model plug-in {cls.name!r}", found)
        return params

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
        """Class probabilities [N, num_classes] for normalized float32 inputs [N, C, H, W], in a new array the caller
        owns (a one-batch prediction hands it on as it is)."""

    def predict_with_embedding(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities [N, num_classes] and the penultimate layer's activations [N, D] (float32) for the same
        normalized inputs, from one forward pass; the embedding is None for a plug-in without one (the default), and
        monitoring then says "no embedding from plug-in <name>". Override together with `has_embedding`."""
        return self.predict_proba(inputs), None

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
