"""The label set each dataset root was first accepted with, kept in the environment's artifact store (one small
artifact per root), so a new or vanished class is flagged on whichever machine validates the data next."""

from __future__ import annotations

from pathlib import Path

from mlops_assets.lib.atomic import atomic_directory
from mlops_assets.lib.data.label_memory import LabelMemory
from mlops_assets.resources.artifacts import ArtifactStore

KIND = "label_sets"


def _key(dataset_root: str) -> str:
    return LabelMemory(Path()).path_for(dataset_root).stem


def where(artifacts: ArtifactStore, dataset_root: str) -> str:
    """Where the root's label set is (or would be) recorded."""
    return artifacts.uri(KIND, _key(dataset_root))


def recall(artifacts: ArtifactStore, dataset_root: str) -> tuple[str, ...] | None:
    """The label set recorded for `dataset_root`, None when none is."""
    stored = artifacts.fetch(KIND, _key(dataset_root))
    return LabelMemory(stored).recall(dataset_root) if stored is not None else None


def remember(artifacts: ArtifactStore, dataset_root: str, labels: tuple[str, ...], data_version: str) -> str:
    """Record the labels once (an existing record is kept: delete it to accept a new label set); returns where."""
    key = _key(dataset_root)
    if artifacts.fetch(KIND, key) is None:
        with artifacts.publishing(KIND, key) as directory, atomic_directory(directory) as staging:
            LabelMemory(staging).remember(dataset_root, labels, data_version)
    return where(artifacts, dataset_root)
