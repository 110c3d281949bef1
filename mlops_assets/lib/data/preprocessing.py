"""The model input's geometry and normalization, and serving's path from bytes to a normalized input.

Decoding and the accept/refuse decisions live in `image_policy`, mode conversion in `image_conversion`; their entry
points are re-exported here for the callers that preprocess (benchmarks, the naive server, tests).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from mlops_assets.lib.data.image_conversion import COLOUR_MODES
from mlops_assets.lib.data.image_conversion import to_eight_bit as to_eight_bit
from mlops_assets.lib.data.image_conversion import to_uint8_array as to_uint8_array
from mlops_assets.lib.data.image_policy import ImagePolicy
from mlops_assets.lib.data.image_policy import decode_image as decode_image


@dataclass(frozen=True)
class ImageSpec:
    """Geometry and normalization every model input goes through; stored with the model."""

    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ImageSpec:
        return cls(
            height=int(data["height"]),
            width=int(data["width"]),
            channels=int(data["channels"]),
            mean=tuple(float(value) for value in data["mean"]),
            std=tuple(float(value) for value in data["std"]),
        )


def normalize(images: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """uint8 [..., C, H, W] to float32 standardized with the training split's per-channel mean and std."""
    scaled = images.astype(np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    return (scaled - mean) / std


def preprocess_bytes(data: bytes, spec: ImageSpec, policy: ImagePolicy | None = None) -> np.ndarray:
    """Serving's path from uploaded bytes to a normalized model input [C, H, W]: the image policy's decoding (the
    default policy unless the model's own is given), then the training split's normalization."""
    pixels, _ = (policy or ImagePolicy()).model_input(data, spec.height, spec.width, spec.channels)
    return normalize(pixels, spec)


def channel_statistics(train_images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (of pixel/255) over uint8 images [N, C, H, W]; std floored to stay finite."""
    if train_images.size == 0:
        raise ValueError("Cannot compute normalization statistics from an empty training split.")
    scaled = train_images.astype(np.float64) / 255.0
    mean = scaled.mean(axis=(0, 2, 3))
    std = np.maximum(scaled.std(axis=(0, 2, 3)), 1e-3)
    return tuple(float(value) for value in mean), tuple(float(value) for value in std)


def infer_geometry(sizes: Iterable[tuple[int, int]], modes: Sequence[str], max_side: int) -> tuple[int, int, int]:
    """(height, width, channels) from the data: the most common (displayed) size, scaled so its long side <= max_side;
    3 channels when any mode carries colour."""
    counted = Counter(sizes)
    if not counted:
        raise ValueError("No decodable images to infer the input geometry from.")
    (width, height), _ = counted.most_common(1)[0]
    scale = min(1.0, max_side / max(width, height))
    height, width = max(1, round(height * scale)), max(1, round(width * scale))
    channels = 3 if any(mode in COLOUR_MODES for mode in modes) else 1
    return height, width, channels
