"""Model plug-ins: resolved by name from the `mlops_assets.model_plugins` entry points, or as `module:Class`."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from mlops_assets.lib.errors import PluginError
from mlops_assets.lib.models.plugins.base import ModelPlugin

ENTRY_POINT_GROUP = "mlops_assets.model_plugins"
# Built-ins resolve even when the package metadata is absent (e.g. inside a bento).
BUILTIN_PLUGINS = {
    "cnn": "mlops_assets.lib.models.plugins.cnn:SmallCNNPlugin",
    "softmax": "mlops_assets.lib.models.plugins.softmax:SoftmaxRegressionPlugin",
}


def available_plugins() -> dict[str, str]:
    found = dict(BUILTIN_PLUGINS)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point.value)
    return found


def resolve_plugin(name: str) -> type[ModelPlugin]:
    """Plug-in class for a registered name or an import path `package.module:ClassName`."""
    target = available_plugins().get(name, name)
    if ":" not in target:
        raise PluginError(
            f"Unknown model plug-in {name!r}. Use one of {sorted(available_plugins())} or 'package.module:Class'."
        )
    module_name, _, class_name = target.partition(":")
    try:
        plugin = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise PluginError(f"Cannot import model plug-in {target!r}: {error}") from error
    if not (isinstance(plugin, type) and issubclass(plugin, ModelPlugin)):
        raise PluginError(f"{target!r} is not a subclass of mlops_assets.lib.models.plugins.base.ModelPlugin.")
    return plugin
