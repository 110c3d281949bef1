"""Where the dataset folder comes from: a configured path, or the bundled sample data."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from mlops_assets import settings
from mlops_assets.lib.sample_data import SAMPLE_NAME, export_digits


class DatasetSource(dg.ConfigurableResource):
    """A dataset folder laid out as `<root>/<label>/<image>`; empty root means the bundled sample digits."""

    root: str = ""

    def resolve_root(self) -> Path:
        if self.root:
            return Path(self.root).expanduser().resolve()
        return export_digits(settings.datasets_dir() / SAMPLE_NAME)
