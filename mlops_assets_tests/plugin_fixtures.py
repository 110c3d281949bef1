"""Plug-in modules written on the fly: importing one leaves a marker file, so a test tells whether it was imported."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

MODULE_SOURCE = '''"""A model plug-in whose import is visible: its top-level code writes a marker file."""

from pathlib import Path

from mlops_assets.lib.models.plugins.softmax import SoftmaxRegressionPlugin

Path({marker!r}).write_text("imported")


class MarkerPlugin(SoftmaxRegressionPlugin):
    """The softmax model under another name."""

    name = {plugin_name!r}
'''


@dataclass(frozen=True)
class MarkerModule:
    """A module `module` in `directory` (not yet on sys.path) defining MarkerPlugin; importing it writes `marker`."""

    directory: Path
    module: str
    marker: Path

    @property
    def import_path(self) -> str:
        return f"{self.module}:MarkerPlugin"


def write_marker_module(directory: Path, plugin_name: str | None = None) -> MarkerModule:
    """A fresh, uniquely named module (never imported before in this process); the plug-in's `name` is what its
    packages record: its import path unless `plugin_name` (e.g. an entry-point name) is given."""
    module = f"marker_plugin_{uuid.uuid4().hex[:12]}"
    marker = directory / f"{module}.imported"
    name = plugin_name or f"{module}:MarkerPlugin"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{module}.py").write_text(MODULE_SOURCE.format(marker=str(marker), plugin_name=name))
    return MarkerModule(directory, module, marker)


def install_entry_point(site: Path, entry_name: str, target: str) -> None:
    """Installed-distribution metadata in `site` (put it on sys.path) registering `entry_name` = `target` in the
    `mlops_assets.model_plugins` group, as `pip install` of a plug-in package would."""
    dist_info = site / "marker_plugins-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: marker-plugins\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[mlops_assets.model_plugins]\n{entry_name} = {target}\n")
