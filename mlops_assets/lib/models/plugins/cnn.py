"""Reference plug-in: a small convolutional image classifier in PyTorch (CUDA when present)."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.utils.deterministic
from torch import nn

from mlops_assets.lib.data.preprocessing import ImageSpec, normalize
from mlops_assets.lib.models.data_parallel import Replicas
from mlops_assets.lib.models.plugins.base import (
    ArrayDataset,
    EpochCallback,
    EpochRecord,
    ModelPlugin,
    ParamRange,
    TrainSettings,
)

# `deterministic` (1 or 0) is a training knob, not part of the architecture: it is not written to cnn.json.
DEFAULT_PARAMS = {"width": 32, "dropout": 0.25, "deterministic": 1}
_CONFIG_FILE = "cnn.json"
_WEIGHTS_FILE = "weights.pt"
# A split is copied to the GPU whole when it takes at most this share of the free GPU memory; otherwise it stays in
# pinned host memory and each batch is copied asynchronously.
_GPU_DATA_SHARE = 0.25


def resolve_device(requested: str) -> str:
    """'auto' picks CUDA when a GPU is visible; an explicit 'cuda' without one is an error, not a silent fallback."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was requested but no CUDA GPU is visible; use 'auto' or 'cpu'.")
    return requested


def make_network(input_shape: tuple[int, int, int], num_classes: int, width: int, dropout: float) -> nn.Module:
    """The plug-in's network for inputs (C, H, W): logits [N, num_classes] for float32 inputs [N, C, H, W]."""
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


@contextlib.contextmanager
def _reproducibility(seed: int, deterministic: bool) -> Iterator[None]:
    """Seed torch and, when `deterministic`, make it use deterministic algorithms (bit-identical weights on CPU for
    the same data, code, seed and number of torch threads); otherwise let cuDNN pick the fastest convolutions. The
    process-wide flags are restored afterwards, so training does not change how other code in the process runs."""
    previous = (
        torch.get_deterministic_debug_mode(),
        torch.backends.cudnn.benchmark,
        torch.utils.deterministic.fill_uninitialized_memory,
    )
    torch.manual_seed(seed)
    # "warn" is use_deterministic_algorithms(True, warn_only=True), as one state that can be restored exactly, and
    # without also switching torch.compile's configuration, which nothing here compiles.
    torch.set_deterministic_debug_mode("warn" if deterministic else "default")
    torch.backends.cudnn.benchmark = not deterministic
    # Deterministic mode also fills every new tensor with NaN by default, a debugging aid against reads of
    # uninitialized memory that no layer here does; it is work on every training step.
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.set_deterministic_debug_mode(previous[0])
        torch.backends.cudnn.benchmark = previous[1]
        torch.utils.deterministic.fill_uninitialized_memory = previous[2]


def _level_table(spec: ImageSpec) -> torch.Tensor:
    """`normalize` applied to every uint8 level of every channel, flattened [C * 256] (index channel * 256 + level).

    Batches are normalized by looking pixels up in this table, on the training device, so the model trains on
    exactly the float32 values `normalize` gives serving, whatever the device's arithmetic.
    """
    levels = np.broadcast_to(np.arange(256, dtype=np.uint8), (spec.channels, 1, 256))
    return torch.from_numpy(normalize(levels, spec).reshape(-1))


class _Batches:
    """One split as tensors where training reads them: uint8 images (zero-copy on CPU; on the GPU, or pinned for
    asynchronous copies when too large) and int64 labels; yields normalized float32 batches [B, C, H, W] in the
    channels-last memory layout, which the convolutions run fastest on."""

    def __init__(self, data: ArrayDataset, device: str) -> None:
        self._device = torch.device(device)
        images = torch.from_numpy(_writable(data.images))
        self._host_images = self._device.type == "cuda" and not _fits_on_gpu(images.nbytes, self._device)
        self._images = images.pin_memory() if self._host_images else images.to(self._device)
        self._labels = torch.from_numpy(data.labels.astype(np.int64)).to(self._device)
        self._table = _level_table(data.spec).to(self._device)
        self._offsets = torch.arange(data.spec.channels, device=self._device) * 256  # per channel, last axis

    def __len__(self) -> int:
        return len(self._labels)

    def iterate(self, order: np.ndarray, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, targets) for consecutive `batch_size` slices of `order` (indices into the split)."""
        return self.iterate_slices(order, range(batch_size, len(order) + batch_size, batch_size))

    def iterate_slices(self, order: np.ndarray, ends: Iterable[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(inputs, targets) for the consecutive slices of `order` that end at each of `ends` (clipped to its
        length; the first starts at 0)."""
        host_order = torch.from_numpy(np.asarray(order, dtype=np.int64))
        device_order = host_order.to(self._device)
        start = 0
        for end in ends:
            end = min(end, len(host_order))
            index = device_order[start:end]
            if self._host_images:
                pixels = self._images[host_order[start:end]].pin_memory()
                pixels = pixels.to(self._device, non_blocking=True)
            else:
                pixels = self._images[index]
            # Looked up in [B, H, W, C] order, so the result is channels-last without another copy.
            channels_last = pixels.permute(0, 2, 3, 1).contiguous().long() + self._offsets
            yield torch.take(self._table, channels_last).permute(0, 3, 1, 2), self._labels[index]
            start = end


def _writable(array: np.ndarray) -> np.ndarray:
    """`array` itself when torch can share it (C-contiguous and writable), else a copy."""
    return array if array.flags.c_contiguous and array.flags.writeable else np.array(array, order="C")


def _fits_on_gpu(nbytes: int, device: torch.device) -> bool:
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= _GPU_DATA_SHARE * free


class _Sums:
    """An epoch's loss sum and count of correct predictions, kept on the device so that an epoch synchronizes once
    instead of twice per batch. The loss is summed in float64 in batch order, as the Python floats it replaces were;
    on the CPU for devices without float64 (MPS)."""

    def __init__(self, device: str) -> None:
        self._device = torch.device("cpu") if torch.device(device).type == "mps" else torch.device(device)
        self._loss = torch.zeros((), dtype=torch.float64, device=self._device)
        self._correct = torch.zeros((), dtype=torch.int64, device=self._device)

    def add(self, loss: torch.Tensor, weight: int, logits: torch.Tensor, targets: torch.Tensor) -> None:
        """Add `loss` x `weight` (a batch's mean loss x its size, or a summed loss x 1) and the batch's hits."""
        self._loss += loss.detach().to(self._device).double() * weight
        self._correct += (logits.detach().argmax(dim=1) == targets).sum().to(self._device)

    def add_across(self, replicas: Replicas) -> None:
        """Replace both sums by their totals over all replicas (the same in every replica)."""
        replicas.sum(self._loss, self._correct)

    def per_item(self, count: int) -> tuple[float, float]:
        """(loss, accuracy) per item of `count`."""
        count = max(count, 1)
        return self._loss.item() / count, self._correct.item() / count


class SmallCNNPlugin(ModelPlugin):
    """A compact CNN whose depth adapts to the input size; trained with Adam and cross-entropy."""

    name = "cnn"
    requirements = ("torch==2.13.0",)
    data_parallel = True
    has_embedding = True
    param_ranges = {
        "width": ParamRange(integer=True, low=1, high=1024),  # channels of the first convolution
        "dropout": ParamRange(low=0, high=1, high_open=True),  # a dropout of 1 would drop every activation
        "deterministic": ParamRange(
            integer=True,
            low=0,
            high=1,
            note="1 (bit-identical weights on CPU for the same data, code and seed) or 0 (fastest algorithms)",
        ),
    }

    def __init__(self, network: nn.Module, config: dict[str, Any], device: str, deterministic: bool = True) -> None:
        self._network = network.to(device)
        self._config = config
        self._device = device
        self._deterministic = deterministic

    @property
    def device(self) -> str:
        return self._device

    @classmethod
    def build(cls, input_shape: tuple[int, int, int], num_classes: int, params: Mapping[str, Any], device: str) -> Self:
        merged = {**DEFAULT_PARAMS, **cls.checked_params(params)}
        config = {
            "input_shape": list(input_shape),
            "num_classes": num_classes,
            "width": int(merged["width"]),
            "dropout": float(merged["dropout"]),
        }
        return cls(cls._make_network(config), config, resolve_device(device), bool(merged["deterministic"]))

    @staticmethod
    def _make_network(config: dict[str, Any]) -> nn.Module:
        return make_network(tuple(config["input_shape"]), config["num_classes"], config["width"], config["dropout"])

    def train(
        self,
        train: ArrayDataset,
        validation: ArrayDataset,
        settings: TrainSettings,
        on_epoch: EpochCallback | None = None,
    ) -> list[EpochRecord]:
        with _reproducibility(settings.seed, self._deterministic):
            return self._train(train, validation, settings, on_epoch)

    def _train(
        self, train: ArrayDataset, validation: ArrayDataset, settings: TrainSettings, on_epoch: EpochCallback | None
    ) -> list[EpochRecord]:
        self._network = self._make_network(self._config).to(self._device, memory_format=torch.channels_last)
        # Under torchrun (more than one process), this process trains one replica of a data-parallel model.
        replicas = Replicas.current()
        model = self._network
        if replicas is not None:
            model = replicas.wrap(self._network, self._device)
            replicas.seed_own_randomness(settings.seed)
        # Fused Adam (CPU and CUDA): one kernel per step instead of about ten small ops per parameter tensor.
        fused = torch.device(self._device).type in ("cpu", "cuda") or None
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, fused=fused)
        shuffler = np.random.default_rng(settings.seed)
        train_batches, validation_batches = _Batches(train, self._device), _Batches(validation, self._device)
        history: list[EpochRecord] = []
        for epoch in range(1, settings.epochs + 1):
            started = time.perf_counter()
            model.train()
            order = shuffler.permutation(len(train))  # the same in every replica: one seed
            if replicas is None:
                sums = _Sums(self._device)
                for inputs, targets in train_batches.iterate(order, settings.batch_size):
                    optimizer.zero_grad(set_to_none=True)
                    logits = model(inputs)
                    loss = nn.functional.cross_entropy(logits, targets)
                    loss.backward()
                    optimizer.step()
                    sums.add(loss, len(targets), logits, targets)
                train_loss, train_accuracy = sums.per_item(len(train))
            else:
                train_loss, train_accuracy = self._train_share(
                    model, optimizer, train_batches, order, settings, replicas
                )
            val_loss, val_accuracy = self._evaluate(validation_batches, settings.batch_size, replicas)
            record = EpochRecord(
                epoch=epoch,
                train_loss=train_loss,
                train_accuracy=train_accuracy,
                val_loss=val_loss,
                val_accuracy=val_accuracy,
                seconds=time.perf_counter() - started,
            )
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
        return history

    def _train_share(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        batches: _Batches,
        order: np.ndarray,
        settings: TrainSettings,
        replicas: Replicas,
    ) -> tuple[float, float]:
        """One epoch as one replica: its share of every batch of `order`; returns the (loss, accuracy) per image over
        all replicas. Each replica's summed loss is scaled by replicas / images in the whole step, so the gradient
        DDP averages is the whole batch's mean-loss gradient, as when one process trains on it."""
        sums = _Sums(self._device)
        indices, steps = replicas.share_batches(order, settings.batch_size)
        for (inputs, targets), (_, step_images) in zip(
            batches.iterate_slices(indices, [end for end, _ in steps]), steps, strict=True
        ):
            optimizer.zero_grad(set_to_none=True)
            logits = model(inputs)
            loss = nn.functional.cross_entropy(logits, targets, reduction="sum")
            (loss * (replicas.world_size / step_images)).backward()
            optimizer.step()
            sums.add(loss, 1, logits, targets)
        sums.add_across(replicas)
        return sums.per_item(sum(step_images for _, step_images in steps))

    def _evaluate(self, batches: _Batches, batch_size: int, replicas: Replicas | None = None) -> tuple[float, float]:
        """(loss, accuracy) per image of `batches`; replicas each evaluate a share, with rank 0's buffers."""
        self._network.eval()
        sums = _Sums(self._device)
        order = np.arange(len(batches))
        if replicas is not None:
            replicas.broadcast_buffers(self._network)
            order = replicas.share(len(batches))
        with torch.inference_mode():
            for inputs, targets in batches.iterate(order, batch_size):
                logits = self._network(inputs)
                sums.add(nn.functional.cross_entropy(logits, targets, reduction="sum"), 1, logits, targets)
        if replicas is not None:
            sums.add_across(replicas)
        return sums.per_item(len(batches))

    def predict_proba(self, inputs: np.ndarray) -> np.ndarray:
        self._eval_mode()
        with torch.inference_mode():
            logits = self._network(self._tensor(inputs))
            return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def predict_with_embedding(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and the 128 activations after the last hidden layer's ReLU (the classifier's input)."""
        self._eval_mode()
        with torch.inference_mode():
            # The layers one by one rather than `network[:-1]`, which builds a new Sequential on every call.
            *hidden, head = self._network
            features = self._tensor(inputs)
            for layer in hidden:
                features = layer(features)
            logits = head(features)
            return torch.softmax(logits.float(), dim=1).cpu().numpy(), features.float().cpu().numpy()

    def _eval_mode(self) -> None:
        # Only when training left it in training mode: `eval()` walks every module, which on a small model costs a
        # noticeable share of a one-image prediction.
        if self._network.training:
            self._network.eval()

    def _tensor(self, inputs: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(self._device)

    def save(self, directory: Path) -> None:
        (directory / _CONFIG_FILE).write_text(json.dumps(self._config, indent=1))
        # Contiguous: the package holds the standard layout whatever memory format training used.
        state = {key: value.detach().cpu().contiguous() for key, value in self._network.state_dict().items()}
        torch.save(state, directory / _WEIGHTS_FILE)

    @classmethod
    def load(cls, directory: Path, device: str) -> Self:
        config = json.loads((directory / _CONFIG_FILE).read_text())
        resolved = resolve_device(device)
        network = cls._make_network(config)
        network.load_state_dict(torch.load(directory / _WEIGHTS_FILE, map_location="cpu", weights_only=True))
        network.eval()
        return cls(network, config, resolved)
