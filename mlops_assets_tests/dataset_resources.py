"""What raw_images and validated_images need besides the dataset folder, for tests that bind their own resources: a
dataset store and the registry holding the dataset catalogue, both under the test's own folder."""

from __future__ import annotations

from pathlib import Path

from mlops_assets.resources.dataset_store import LocalDatasetStore
from mlops_assets.resources.registry import ModelRegistryResource


def dataset_store_under(root: Path) -> LocalDatasetStore:
    return LocalDatasetStore(root=str(root / "dataset-store"))


def registry_under(root: Path) -> ModelRegistryResource:
    return ModelRegistryResource(url=f"sqlite:///{root}/registry.db")
