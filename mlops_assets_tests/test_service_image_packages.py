"""The service needs nothing its image lacks: every package it imports is installed by its bentofile.

A bento's image installs the bentofile's `python.packages`, BentoML, and what those depend on; nothing else of this
project's environment. A package the service imports beyond that is there in every local run and test (one
environment holds everything) and missing only in the container, where the service then fails to start.
"""

import ast
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mlops_assets import settings
from mlops_assets.packaging import BENTOFILES

PROJECT_PACKAGES = ("mlops_assets", "bento")
PROJECT_DISTRIBUTION = "mlops-assets"  # installed in development mode; its code is copied into the bento
# Imports the service (bento/service.py) with the model tag argument `bentoml serve --arg` gives it, and the built-in
# model plug-ins as loading a model does, then prints every loaded module and the file it came from.
LOADED_MODULES = """
import json, sys
from bentoml._internal.utils.args import set_arguments
set_arguments({"model_tag": "any-model:any-version"})
import bento.service
from mlops_assets.lib.models.plugins import BUILTIN_PLUGINS, resolve_plugin
for name in BUILTIN_PLUGINS:
    resolve_plugin(name)
print(json.dumps({name: getattr(module, "__file__", None) for name, module in list(sys.modules.items())}))
"""


def _image_distributions(target: str) -> set[str]:
    """Distributions the image of `target` installs: its bentofile's packages and BentoML, with their dependencies
    as this environment's installed metadata states them (extras excluded, as the image installs none)."""
    bentofile = yaml.safe_load((settings.PROJECT_ROOT / BENTOFILES[target]).read_text())
    pending = [Requirement(package).name for package in bentofile["python"]["packages"]] + ["bentoml"]
    installed: set[str] = set()
    while pending:
        name = canonicalize_name(pending.pop())
        if name in installed:
            continue
        installed.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return installed


@cache
def _top_level_owners() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distribution(name: str, module_file: str | None) -> str | None:
    """The distribution that installed module `name` from `module_file`; None for built-ins, namespace packages and
    this project. Several distributions can share a top-level name (google-*): the one listing the file owns it."""
    if module_file is None:
        return None
    path = Path(module_file).resolve()
    for owner in _top_level_owners().get(name.split(".")[0], []):
        distribution = importlib.metadata.distribution(owner)
        root = Path(distribution.locate_file("")).resolve()
        listed = {str(file) for file in distribution.files or []}
        if path.is_relative_to(root) and path.relative_to(root).as_posix() in listed:
            owner = canonicalize_name(owner)
            return None if owner == canonicalize_name(PROJECT_DISTRIBUTION) else owner
    return None


def _loaded_project_files() -> set[Path]:
    """The files of this project a server worker loads: at start and with a model (in a fresh interpreter)."""
    loaded = subprocess.run(
        [sys.executable, "-c", LOADED_MODULES], cwd=settings.PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr
    modules = json.loads(loaded.stdout.splitlines()[-1])
    return {
        Path(file).resolve()
        for name, file in modules.items()
        if file and name.split(".")[0] in PROJECT_PACKAGES and file.endswith(".py")
    }


def _imported_modules(source: Path) -> set[str]:
    """Absolute module names a file imports anywhere in it: at the top and inside functions (run on first use).
    `from a.b import c` names a.b.c where c is a module (a.b may be a namespace package such as google.cloud)."""
    names = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _spec(name: str) -> importlib.machinery.ModuleSpec | None:
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:  # a.b.c where a.b is a module, not a package: c is a name in it
        return None


def _third_party_imports(sources: set[Path]) -> dict[str, set[str]]:
    """Distribution -> the "file: module" imports of `sources` that need it."""
    needed: dict[str, set[str]] = {}
    for source in sources:
        for name in _imported_modules(source):
            top = name.split(".")[0]
            if top in PROJECT_PACKAGES or top in sys.stdlib_module_names:
                continue
            spec = _spec(name)
            if spec is None and "." not in name:
                raise AssertionError(f"{source.name} imports {name}, which is not installed")
            distribution = _distribution(name, spec.origin if spec else None)
            if distribution is not None:
                needed.setdefault(distribution, set()).add(f"{source.name}: {name}")
    return needed


def test_every_package_the_services_code_imports_is_installed_in_its_images() -> None:
    # Imports at the top of a module run when the service starts; those inside functions on first use (a request, a
    # model's load): a missing package fails the container either way, only later in the second case.
    sources = _loaded_project_files()
    for loaded in ("bento/service.py", "mlops_assets/lib/models/plugins/cnn.py"):
        assert (settings.PROJECT_ROOT / loaded).resolve() in sources, loaded
    needed = _third_party_imports(sources)
    assert {"torch", "numpy", "pillow", "bentoml"} <= set(needed), sorted(needed)
    for target in BENTOFILES:
        missing = {name: sorted(needed[name]) for name in sorted(set(needed) - _image_distributions(target))}
        assert not missing, f"the service's code imports packages {BENTOFILES[target]} does not install: {missing}"


def test_the_check_finds_a_package_the_images_lack(tmp_path: Path) -> None:
    # pandas (a dependency of this project's monitoring) is in no image: code that imports it is caught, at the top
    # or inside a function, and so is a package that is not installed at all.
    source = tmp_path / "uses_pandas.py"
    source.write_text("import numpy\n\ndef frame():\n    from pandas import DataFrame\n    return DataFrame()\n")
    needed = _third_party_imports({source})
    assert needed == {"numpy": {"uses_pandas.py: numpy"}, "pandas": {"uses_pandas.py: pandas"}}
    for target in BENTOFILES:
        assert set(needed) - _image_distributions(target) == {"pandas"}
    source.write_text("def later():\n    import no_such_package_anywhere\n")
    with pytest.raises(AssertionError, match="imports no_such_package_anywhere, which is not installed"):
        _third_party_imports({source})
