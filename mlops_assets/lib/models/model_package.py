"""A trained model on disk: the plug-in's files plus the preprocessing spec, image policy and label set it expects."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlops_assets.lib.atomic import atomic_directory
from mlops_assets.lib.data.image_policy import ImagePolicy
from mlops_assets.lib.data.preprocessing import ImageSpec, normalize
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.models.plugins import resolve_plugin
from mlops_assets.lib.models.plugins.base import ModelPlugin

PACKAGE_FILE = "package.json"
MODEL_DIR = "model"


def directory_sha256(directory: Path) -> str:
    """Hash of every file's relative path and bytes: equal hashes mean bit-identical models."""
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        digest.update(path.relative_to(directory).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            digest.update(hashlib.file_digest(handle, "sha256").digest())
    return digest.hexdigest()


def save_package(
    destination: Path,
    plugin: ModelPlugin,
    spec: ImageSpec,
    labels: Sequence[str],
    info: dict[str, Any],
    policy: ImagePolicy | None = None,
) -> str:
    """Write the package atomically (temp dir, then rename) and return the weights' SHA-256.

    `policy` is the image policy the training data was accepted and decoded under (default: the default policy);
    the service enforces it, so it refuses what training refused as not an image.
    """
    with atomic_directory(destination) as staging:
        (staging / MODEL_DIR).mkdir()
        plugin.save(staging / MODEL_DIR)
        weights_sha256 = directory_sha256(staging / MODEL_DIR)
        document = {
            "plugin": plugin.name,
            "spec": spec.to_dict(),
            "image_policy": (policy or ImagePolicy()).to_dict(),
            "labels": list(labels),
            "weights_sha256": weights_sha256,
            "info": info,
        }
        (staging / PACKAGE_FILE).write_text(json.dumps(document, indent=1, sort_keys=True))
    return weights_sha256


@dataclass
class LoadedModel:
    """A model ready to answer: plug-in, spec, labels, its recorded info and the image policy it was trained under."""

    plugin: ModelPlugin
    spec: ImageSpec
    labels: tuple[str, ...]
    weights_sha256: str
    info: dict[str, Any]
    policy: ImagePolicy = field(default_factory=ImagePolicy)

    def predict_proba(self, inputs: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Probabilities for normalized inputs, in bounded batches."""
        if len(inputs) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return _joined([self.plugin.predict_proba(batch) for batch in _batches(inputs, batch_size)])

    def predict_uint8(self, images: np.ndarray, batch_size: int = 512) -> np.ndarray:
        """Probabilities for uint8 images [N, C, H, W], normalized batch by batch."""
        if len(images) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return _joined(
            [self.plugin.predict_proba(normalize(batch, self.spec)) for batch in _batches(images, batch_size)]
        )

    def predict_uint8_with_embedding(
        self, images: np.ndarray, batch_size: int = 512
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and the plug-in's embeddings [N, D] for uint8 images [N, C, H, W]; embeddings None when the
        plug-in has none (`ModelPlugin.has_embedding`)."""
        if len(images) == 0:
            return np.zeros((0, len(self.labels)), dtype=np.float32), None
        pieces = [
            self.plugin.predict_with_embedding(normalize(batch, self.spec)) for batch in _batches(images, batch_size)
        ]
        probabilities = _joined([piece[0] for piece in pieces])
        embeddings = [piece[1] for piece in pieces]
        return probabilities, None if embeddings[0] is None else _joined(embeddings)


def _batches(items: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`items` in consecutive slices (views) of at most `batch_size` rows."""
    return [items[start : start + batch_size] for start in range(0, len(items), batch_size)]


def _joined(pieces: list[np.ndarray]) -> np.ndarray:
    # One batch (the serving path: one request's images) is handed on as it is, with nothing to concatenate.
    return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)


def package_policy(document: dict[str, Any]) -> ImagePolicy:
    """The image policy recorded in a package document; a package written before policies were recorded was trained
    under the default policy's decoding, so it gets that one."""
    return ImagePolicy.from_dict(document.get("image_policy", {}))


def read_package_document(directory: Path) -> dict[str, Any]:
    path = directory / PACKAGE_FILE
    if not path.is_file():
        raise MLOpsError(f"{directory} is not a model package (no {PACKAGE_FILE}); rebuild the trained_model asset.")
    return json.loads(path.read_text())


def load_package(directory: Path, device: str = "auto") -> LoadedModel:
    """Load a package written by `save_package` through the plug-in it names."""
    document = read_package_document(directory)
    plugin_class = resolve_plugin(document["plugin"])
    return LoadedModel(
        plugin=plugin_class.load(directory / MODEL_DIR, device),
        spec=ImageSpec.from_dict(document["spec"]),
        labels=tuple(document["labels"]),
        weights_sha256=document["weights_sha256"],
        info=document["info"],
        policy=package_policy(document),
    )
