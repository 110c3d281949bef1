"""BentoML glue: store a model package in the BentoML model store and build the service bento."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlops_assets import settings
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.models.plugins import resolve_plugin
from mlops_assets.lib.serving.serving_arguments import validate_service_arguments

BENTOFILE = settings.PROJECT_ROOT / "bento" / "bentofile.yaml"
BENTOFILE_LABEL = "bento/bentofile.yaml"
SERVING_CONFIG = settings.environment_file("local")


@dataclass(frozen=True)
class BentoArtifact:
    """What the bento asset produced: the model and bento tags in the local BentoML store."""

    model_tag: str
    bento_tag: str
    bento_path: str


def _bentoml():
    # BentoML resolves its home on first import; make sure it is this project's home.
    os.environ.setdefault("BENTOML_HOME", str(settings.bentoml_home()))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    import bentoml

    return bentoml


def store_model(package_dir: Path, name: str, version: str, labels: dict[str, str], metadata: dict[str, Any]) -> str:
    """Copy a model package into the BentoML model store as `name:version` (reused if already there)."""
    bentoml = _bentoml()
    tag = f"{name}:{version}"
    try:
        return str(bentoml.models.get(tag).tag)
    except bentoml.exceptions.NotFound:
        pass
    with bentoml.models.create(name=tag, labels=labels, metadata=metadata) as model:
        shutil.copytree(package_dir, model.path, dirs_exist_ok=True)
    return str(model.tag)


def serving_arguments() -> dict[str, Any]:
    """The `serving:` settings (batching bounds, workers, threads, API key variable, log sampling) of the config."""
    return dict(yaml.safe_load(SERVING_CONFIG.read_text()).get("serving") or {})


def _parsed(requirement: str, source: str) -> Requirement:
    try:
        return Requirement(requirement)
    except InvalidRequirement as error:
        raise MLOpsError(f"{source} lists {requirement!r}, which is not a valid requirement: {error}") from error


def _same(one: Requirement, other: Requirement) -> bool:
    """Equal as pip reads them: normalized name, the same set of specifiers, extras, marker and URL."""
    return (canonicalize_name(one.name), one.specifier, one.extras, str(one.marker), one.url) == (
        canonicalize_name(other.name),
        other.specifier,
        other.extras,
        str(other.marker),
        other.url,
    )


def _unpinned(requirement: Requirement) -> bool:
    """A bare name ("numpy"): any pin of that package satisfies it."""
    return not (requirement.specifier or requirement.extras or requirement.marker or requirement.url)


def merge_python_packages(
    bentofile_packages: Sequence[str], plugin_requirements: Sequence[str], plugin: str
) -> list[str]:
    """The bentofile's packages followed by the plug-in's, each package once.

    A plug-in requirement equal to one already listed, or a bare name of a package already pinned, adds nothing.
    Raises MLOpsError naming both when the plug-in pins a package differently from the bentofile (or from itself).
    """
    merged: dict[str, tuple[Requirement, str, str]] = {}  # canonical name -> (requirement, as written, source)
    sources = [(BENTOFILE_LABEL, bentofile_packages), (f"model plug-in {plugin!r}", plugin_requirements)]
    for source, packages in sources:
        for written in packages:
            requirement = _parsed(written, source)
            key = canonicalize_name(requirement.name)
            if key not in merged:
                merged[key] = (requirement, written, source)
                continue
            listed, listed_as, listed_in = merged[key]
            if _same(requirement, listed) or _unpinned(requirement):
                continue
            if _unpinned(listed):
                merged[key] = (requirement, written, source)
                continue
            raise MLOpsError(
                f"{source} requires {written!r}, which conflicts with {listed_as!r} from {listed_in}. "
                "A bento installs one version of each package: make the two pins agree."
            )
    return [written for _, written, _ in merged.values()]


def build_service_bento(
    model_tag: str,
    labels: dict[str, str],
    serving: dict[str, Any] | None = None,
    version: str | None = None,
    plugin: str | None = None,
) -> tuple[BentoArtifact, bool]:
    """Build `bento/` (service + bentofile) with the model tag and serving settings baked in as bento arguments.

    The bento's Python packages are the bentofile's plus the `requirements` of the model `plugin` (a plug-in
    name or `module:Class`), merged by `merge_python_packages` (a conflicting pin raises MLOpsError). With a
    `version`, the bento is `<name>:<version>` and an existing one is reused; returns the artifact and whether
    it was reused (a cache hit: nothing rebuilt).
    """
    bentoml = _bentoml()
    serving = serving_arguments() if serving is None else serving
    # Checked here, before anything is built: BentoML validates bento arguments only when it first imports the
    # service, so a second build in the same process would take bad settings silently.
    validate_service_arguments({**serving, "model_tag": model_tag})
    bentofile = yaml.safe_load(BENTOFILE.read_text())
    python = dict(bentofile.get("python") or {})
    requirements = resolve_plugin(plugin).requirements if plugin else ()
    python["packages"] = merge_python_packages(python.get("packages") or [], requirements, plugin or "")
    if version is not None:
        try:
            existing = bentoml.bentos.get(f"{bentofile['name']}:{version}")
            return BentoArtifact(model_tag, str(existing.tag), str(existing.path)), True
        except bentoml.exceptions.NotFound:
            pass
    # BentoML takes packages only from a bentofile, so the merged one is written next to nothing else; paths in it
    # (include/exclude) are relative to the build context, not to the file.
    with tempfile.TemporaryDirectory(prefix="bentofile-") as directory:
        merged = Path(directory) / "bentofile.yaml"
        merged.write_text(yaml.safe_dump({**bentofile, "python": python}, sort_keys=False))
        bento = bentoml.bentos.build_bentofile(
            str(merged),
            build_ctx=str(settings.PROJECT_ROOT),
            labels=labels,
            args={**serving, "model_tag": model_tag},
            version=version,
        )
    return BentoArtifact(model_tag=model_tag, bento_tag=str(bento.tag), bento_path=str(bento.path)), False


def stored_model_path(model_tag: str) -> Path:
    """The model package of `model_tag` in the BentoML store (how a registered version's model is reached)."""
    bentoml = _bentoml()
    try:
        return Path(bentoml.models.get(model_tag).path)
    except bentoml.exceptions.NotFound as error:
        raise FileNotFoundError(
            f"Model {model_tag} is not in the BentoML store at {settings.bentoml_home()}; restore the store or "
            "point MLOPS_HOME at the project that built it."
        ) from error


def bento_model_tag(bento_tag: str) -> str:
    """The model tag a bento was built to serve (its build argument)."""
    bentoml = _bentoml()
    try:
        return bentoml.bentos.get(bento_tag).info.args["model_tag"]
    except bentoml.exceptions.NotFound as error:
        raise FileNotFoundError(f"Bento {bento_tag} is not in the BentoML store; see `bentoml list`.") from error
