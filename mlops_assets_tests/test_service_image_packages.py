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

import pathspec
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
    this project. Several distributions can share a top-level name (google-*): the one listing the file owns it.
    Raises AssertionError when distributions claim the top-level name but none lists the file (the check cannot
    tell what the import needs, so it must not pass it)."""
    if module_file is None:
        return None
    path = Path(module_file).resolve()
    owners = _top_level_owners().get(name.split(".")[0], [])
    for owner in owners:
        distribution = importlib.metadata.distribution(owner)
        root = Path(distribution.locate_file("")).resolve()
        listed = {str(file) for file in distribution.files or []}
        if path.is_relative_to(root) and path.relative_to(root).as_posix() in listed:
            owner = canonicalize_name(owner)
            return None if owner == canonicalize_name(PROJECT_DISTRIBUTION) else owner
    assert not owners, f"{name} comes from {path}, which none of {owners} lists among its files"
    return None


def _loaded_project_modules() -> dict[str, Path]:
    """Module name -> file of this project's modules a server worker loads: at start and with a model (in a fresh
    interpreter)."""
    loaded = subprocess.run(
        [sys.executable, "-c", LOADED_MODULES], cwd=settings.PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert loaded.returncode == 0, loaded.stderr
    modules = json.loads(loaded.stdout.splitlines()[-1])
    return {
        name: Path(file).resolve()
        for name, file in modules.items()
        if file and name.split(".")[0] in PROJECT_PACKAGES and file.endswith(".py")
    }


def _imported_modules(source: Path) -> set[str]:
    """Absolute module names a file imports anywhere in it: at the top and inside functions (run on first use), and
    by `importlib.import_module("name")` or `__import__("name")` with the name written out.
    `from a.b import c` names a.b.c where c is a module (a.b may be a namespace package such as google.cloud)."""
    names = set()
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def _spec(name: str) -> importlib.machinery.ModuleSpec | None:
    try:
        return importlib.util.find_spec(name)
    except ModuleNotFoundError:  # a.b.c where a.b is a module, not a package (c is a name in it), or a is missing
        return None


def _project_closure(sources: set[Path]) -> set[Path]:
    """`sources` and every module of this project they import, however deep (a function may import one on its first
    call that the worker did not load at start)."""
    pending, found = list(sources), set(sources)
    while pending:
        for name in _imported_modules(pending.pop()):
            if name.split(".")[0] not in PROJECT_PACKAGES:
                continue
            spec = _spec(name)
            origin = Path(spec.origin).resolve() if spec and spec.origin else None
            if origin is not None and origin.suffix == ".py" and origin not in found:
                found.add(origin)
                pending.append(origin)
    return found


def _third_party_imports(sources: set[Path]) -> dict[str, set[str]]:
    """Distribution -> the "file: module" imports of `sources` that need it. Raises AssertionError for an import of
    a package that is not installed at all."""
    needed: dict[str, set[str]] = {}
    for source in sources:
        for name in _imported_modules(source):
            top = name.split(".")[0]
            if top in PROJECT_PACKAGES or top in sys.stdlib_module_names:
                continue
            if _spec(top) is None:
                raise AssertionError(f"{source.name} imports {name}, which is not installed")
            spec = _spec(name)
            distribution = _distribution(name, spec.origin if spec else None)
            if distribution is not None:
                needed.setdefault(distribution, set()).add(f"{source.name}: {name}")
    return needed


@cache
def _bentofile_globs(target: str) -> tuple[pathspec.PathSpec, pathspec.PathSpec]:
    """The include and exclude globs of `target`'s bentofile, as BentoML reads them."""
    bentofile = yaml.safe_load((settings.PROJECT_ROOT / BENTOFILES[target]).read_text())
    return tuple(pathspec.PathSpec.from_lines("gitwildmatch", bentofile.get(key, [])) for key in ("include", "exclude"))


def _shipped(target: str, source: Path) -> bool:
    """Whether the bento of `target` copies `source` (its bentofile's include and exclude)."""
    relative = source.relative_to(settings.PROJECT_ROOT.resolve()).as_posix()
    include, exclude = _bentofile_globs(target)
    return include.match_file(relative) and not exclude.match_file(relative)


def test_every_package_the_services_code_imports_is_installed_in_its_images() -> None:
    # Imports at the top of a module run when the service starts; those inside functions on first use (a request, a
    # model's load): a missing package fails the container either way, only later in the second case.
    sources = _project_closure(set(_loaded_project_modules().values()))
    for loaded in ("bento/service.py", "mlops_assets/lib/models/plugins/cnn.py"):
        assert (settings.PROJECT_ROOT / loaded).resolve() in sources, loaded
    needed = _third_party_imports(sources)
    assert {"torch", "numpy", "pillow", "bentoml"} <= set(needed), sorted(needed)
    for target in BENTOFILES:
        missing = {name: sorted(needed[name]) for name in sorted(set(needed) - _image_distributions(target))}
        assert not missing, f"the service's code imports packages {BENTOFILES[target]} does not install: {missing}"


def test_every_module_of_the_project_the_service_needs_is_copied_into_its_bento() -> None:
    sources = _project_closure(set(_loaded_project_modules().values()))
    for target in BENTOFILES:
        left_out = sorted(str(source) for source in sources if not _shipped(target, source))
        assert not left_out, f"{BENTOFILES[target]} does not include {left_out}, which the service imports"


def test_the_check_finds_a_package_the_images_lack(tmp_path: Path) -> None:
    # pandas (a dependency of this project's monitoring) is in no image: code that imports it is caught, at the top
    # or inside a function, and so is a package that is not installed at all.
    source = tmp_path / "uses_pandas.py"
    source.write_text("import numpy\n\ndef frame():\n    from pandas import DataFrame\n    return DataFrame()\n")
    needed = _third_party_imports({source})
    assert needed == {"numpy": {"uses_pandas.py: numpy"}, "pandas": {"uses_pandas.py: pandas"}}
    for target in BENTOFILES:
        assert set(needed) - _image_distributions(target) == {"pandas"}
    source.write_text("import importlib\n\ndef later():\n    return importlib.import_module('pandas.io')\n")
    assert _third_party_imports({source}) == {"pandas": {"uses_pandas.py: pandas.io"}}
    for missing in ("import no_such_package_anywhere", "from no_such_package.sub import name", "import no_such.sub"):
        source.write_text(f"def later():\n    {missing}\n")
        with pytest.raises(AssertionError, match=r"imports no_such[\w.]*, which is not installed"):
            _third_party_imports({source})


def test_the_check_follows_the_projects_own_imports_and_knows_what_the_bento_ships(tmp_path: Path) -> None:
    # A service function that imports the drift test on first use brings in its pandas and Evidently.
    source = tmp_path / "service_like.py"
    source.write_text("def later():\n    from mlops_assets.lib.monitoring.embeddings import embedding_drift\n")
    reached = _project_closure({source})
    embeddings = (settings.PROJECT_ROOT / "mlops_assets" / "lib" / "monitoring" / "embeddings.py").resolve()
    assert embeddings in reached
    assert {"pandas", "evidently"} <= set(_third_party_imports(reached))
    assert _shipped("local", embeddings)
    assert not _shipped("local", (settings.PROJECT_ROOT / "mlops_assets" / "definitions.py").resolve())
