"""Local artifact storage: content-keyed directories under MLOPS_HOME."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlops_assets import settings


class LocalArtifactStore(dg.ConfigurableResource):
    """Directories for stored artifacts (validated arrays, model packages), keyed by kind and version."""

    root: str = ""

    def base(self) -> Path:
        return Path(self.root).expanduser().resolve() if self.root else settings.artifacts_dir()

    def path_for(self, kind: str, key: str) -> Path:
        return self.base() / kind / key
