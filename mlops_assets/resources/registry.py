"""The model registry resource: SQLite under MLOPS_HOME by default, any SQLAlchemy URL (PostgreSQL) by config."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlops_assets import settings
from mlops_assets.lib.registry.policy import PromotionPolicy, load_policy
from mlops_assets.lib.registry.registry import ModelRegistry


class ModelRegistryResource(dg.ConfigurableResource):
    """Model versions and their status in one environment; `url` empty means MLOPS_REGISTRY_URL or the SQLite file."""

    url: str = ""
    environment: str = "local"
    # The environment file holding the `promotion:` policy; empty means deployments/<environment>.yaml.
    policy_file: str = ""
    model_name: str = "image-classifier"

    def open(self) -> ModelRegistry:
        return ModelRegistry(self.url or settings.registry_url(), self.environment, self.model_name)

    def policy(self) -> PromotionPolicy:
        path = Path(self.policy_file) if self.policy_file else settings.environment_file(self.environment)
        return load_policy(path)
