"""Model plug-ins: the built-in set and the `mlops_assets.model_plugins` entry points; `module:Class` import paths
only where the operator allows them (MLOPS_ALLOW_PLUGIN_IMPORT_PATHS)."""

from __future__ import annotations

import os
import re
from importlib.metadata import EntryPoint, entry_points

from mlops_assets.lib.errors import PluginError
from mlops_assets.lib.models.plugins.base import ModelPlugin

ENTRY_POINT_GROUP = "mlops_assets.model_plugins"
# Built-ins resolve even when the package metadata is absent (e.g. inside a bento).
BUILTIN_PLUGINS = {
    "cnn": "mlops_assets.lib.models.plugins.cnn:SmallCNNPlugin",
    "softmax": "mlops_assets.lib.models.plugins.softmax:SoftmaxRegressionPlugin",
}
# An operator setting, read from the environment of the process that loads plug-ins (the code location, the run,
# the `mlops` CLI, the model server), never from run config: whoever may launch runs must not choose code to import.
ALLOW_IMPORT_PATHS_ENV = "MLOPS_ALLOW_PLUGIN_IMPORT_PATHS"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")
_IMPORT_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def available_plugins() -> dict[str, str]:
    """Plug-in name -> `module:Class` for the built-ins and the installed entry points (nothing is imported)."""
    found = dict(BUILTIN_PLUGINS)
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point.value)
    return found


def import_paths_allowed() -> bool:
    """Whether MLOPS_ALLOW_PLUGIN_IMPORT_PATHS allows `module:Class` plug-ins; unset means no.

    Raises PluginError for a value that is neither a yes (1, true, yes, on) nor a no (0, false, no, off, empty).
    """
    value = os.environ.get(ALLOW_IMPORT_PATHS_ENV, "")
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return False
    raise PluginError(
        f"{ALLOW_IMPORT_PATHS_ENV}={value!r} is neither yes nor no; set it to 1 to allow `module:Class` model "
        "plug-ins, or to 0 (or leave it unset) to allow only the built-in and installed ones."
    )


def resolve_plugin(name: str) -> type[ModelPlugin]:
    """Plug-in class for a registered name (or its exact `module:Class` target), or any `package.module:ClassName`
    where the operator allows import paths.

    A refused import path is refused before anything is imported, so its module's top-level code never runs.
    Raises PluginError naming the plug-in and what to do.
    """
    available = available_plugins()
    target = available.get(name, name)
    if target not in available.values():
        if ":" not in target:
            path_hint = " or give it as 'package.module:Class'" if import_paths_allowed() else ""
            raise PluginError(
                f"Unknown model plug-in {name!r}. Use one of {sorted(available)}, or install it under the "
                f"{ENTRY_POINT_GROUP!r} entry points{path_hint}."
            )
        if not import_paths_allowed():
            raise PluginError(
                f"Model plug-in {name!r} is an import path, and import paths are not allowed here (nothing was "
                f"imported). Use one of {sorted(available)} or install the plug-in under the {ENTRY_POINT_GROUP!r} "
                f"entry points; an operator can allow import paths with {ALLOW_IMPORT_PATHS_ENV}=1 in the "
                "environment of the code location (and of the model server)."
            )
        if not _IMPORT_PATH.fullmatch(target):
            raise PluginError(f"Model plug-in {name!r} is not an import path of the form 'package.module:Class'.")
    try:
        # An entry point's own loader: `module:Class` or `module:Outer.Class`, as entry points may name them.
        plugin = EntryPoint(name=name, value=target, group=ENTRY_POINT_GROUP).load()
    except (ImportError, AttributeError) as error:
        raise PluginError(f"Cannot import model plug-in {target!r}: {error}") from error
    if not (isinstance(plugin, type) and issubclass(plugin, ModelPlugin)):
        raise PluginError(f"{target!r} is not a subclass of mlops_assets.lib.models.plugins.base.ModelPlugin.")
    return plugin
