"""BentoML glue: store a model package in the BentoML model store and build the service bento."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
from mlops_assets.lib.settings_validation import ConfigError, yaml_problem

BENTOFILE = settings.PROJECT_ROOT / "bento" / "bentofile.yaml"
BENTOFILE_LABEL = "bento/bentofile.yaml"
# The bentofile of each image target: `local` (CPU torch) for bentos served on this machine, `cloud_run` (CUDA torch
# for the L4 GPU) when a stage of the environment deploys to Cloud Run. Paths are relative to the project root.
BENTOFILES = {"local": BENTOFILE_LABEL, "cloud_run": "bento/bentofile.cloud_run.yaml"}


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


# BentoML writes a store item in place (a folder at its final path, then filled) and works in temporary folders: one
# writer per home at a time, and a journal of the item being written, so what a killed writer left is recognised.
STORE_LOCK = "bentoml-store"
PENDING_WRITE = "bentoml-store-write.json"
# Temporary folders under BENTOML_HOME/tmp: a bento being built (BentoML), a model being created (BentoML, sent there
# by `store_writes`), a merged bentofile (this module).
TEMPORARY_PREFIXES = ("bentoml_bento_", "bentoml-model-", "bentofile-")


def _temporary_root() -> Path:
    return settings.bentoml_home() / "tmp"


def _pending_write() -> Path:
    return settings.locks_dir() / PENDING_WRITE


def remove_interrupted_store_writes() -> list[Path]:
    """Remove what a killed store writer left: the item it was writing and its temporary folders.

    Call only while holding the store lock (no live process is writing then). Returns the paths removed.
    """
    removed: list[Path] = []
    journal = _pending_write()
    if journal.exists():
        try:
            pending = json.loads(journal.read_text())
        except ValueError:
            pending = None  # torn while being written: the write it announced had not started
        if pending:
            kind, tag = pending["kind"], pending["tag"]
            name, _, version = tag.partition(":")
            item = settings.bentoml_home() / kind / name / version
            if item.exists():
                shutil.rmtree(item)
                removed.append(item)
            latest = item.parent / "latest"
            if latest.is_file() and latest.read_text().strip() == version:
                latest.unlink()  # BentoML writes it again with the next version stored
        journal.unlink()
    root = _temporary_root()
    if root.is_dir():
        for entry in root.iterdir():
            if not entry.name.startswith(TEMPORARY_PREFIXES):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def tidy_store() -> list[Path]:
    """Start-up housekeeping: remove a dead writer's leftovers unless a live process is writing now (then it will)."""
    try:
        with settings.home_lock(STORE_LOCK, timeout_s=0):
            return remove_interrupted_store_writes()
    except settings.HomeLockTimeout:
        return []


@contextmanager
def store_writes() -> Iterator[None]:
    """Hold the store for writing: what a killed writer left is removed first; temporary folders go to BENTOML_HOME."""
    with settings.home_lock(STORE_LOCK):
        remove_interrupted_store_writes()
        _temporary_root().mkdir(parents=True, exist_ok=True)
        # bentoml.models.create makes its working copy in the default temporary directory; send it under the home,
        # where it is recognised and removed if this process is killed. Steps run one at a time in this process.
        previous, tempfile.tempdir = tempfile.tempdir, str(_temporary_root())
        try:
            yield
        finally:
            tempfile.tempdir = previous


@contextmanager
def _journal(kind: str, tag: str) -> Iterator[None]:
    """Announce the store item being written; a journal left behind means its writer died mid-write."""
    from mlops_assets.lib.atomic import atomic_write_text

    atomic_write_text(_pending_write(), json.dumps({"kind": kind, "tag": tag, "pid": os.getpid()}))
    try:
        yield
    finally:
        # BentoML removes a half-written item itself when an exception interrupts the write.
        _pending_write().unlink(missing_ok=True)


def store_model(package_dir: Path, name: str, version: str, labels: dict[str, str], metadata: dict[str, Any]) -> str:
    """Copy a model package into the BentoML model store as `name:version` (reused if already there).

    Another process storing the same model at the same time is waited for, and its model reused.
    """
    bentoml = _bentoml()
    tag = str(bentoml.Tag(name, version))  # as BentoML names it (lower case)
    with store_writes():
        try:
            return str(bentoml.models.get(tag).tag)
        except bentoml.exceptions.NotFound:
            pass
        with _journal("models", tag), bentoml.models.create(name=tag, labels=labels, metadata=metadata) as model:
            shutil.copytree(package_dir, model.path, dirs_exist_ok=True)
    return str(model.tag)


def bento_target() -> str:
    """The image target of the selected environment's bentos: "cloud_run" when any deployment stage has
    `target: cloud_run` (its bento is the one deployed there), else "local"."""
    deployments = settings.environment_settings().deployments
    stages = (deployments.staging, deployments.production)
    return "cloud_run" if any(stage.target == "cloud_run" for stage in stages) else "local"


def serving_arguments(model_labels: Sequence[str] | None = None) -> dict[str, Any]:
    """The `serving:` settings (batching bounds, workers, threads, API key variable, log sampling) of the selected
    environment (deployments/<env>.yaml; its defaults where the file has no such section), with what the service
    keeps for monitoring (`monitoring.capture`). Given the model's labels, raises MLOpsError when an alert label
    is not one of them (an alert that could never fire)."""
    from mlops_assets.lib.monitoring.settings import alert_label_problem

    found = settings.environment_settings()
    if model_labels is not None:
        problem = alert_label_problem(found.monitoring.capture.alert_labels, model_labels)
        if problem:
            raise MLOpsError(f"{problem} ({settings.environment_file(found.environment).name}).")
    return {**found.serving.model_dump(), "capture": found.monitoring.capture.model_dump()}


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


def _satisfied_by_exact_pin(requirement: Requirement, listed: Requirement) -> bool:
    """`listed` pins one version (`torch==2.13.0+cu126`) that `requirement` (`torch==2.13.0`) accepts, with the same
    extras, marker and URL: a build of the same release, such as a CUDA build named by its local version label."""
    pins = list(listed.specifier)
    if len(pins) != 1 or pins[0].operator != "==" or "*" in pins[0].version:
        return False
    same_rest = (requirement.extras, str(requirement.marker), requirement.url) == (
        listed.extras,
        str(listed.marker),
        listed.url,
    )
    return same_rest and requirement.specifier.contains(pins[0].version, prereleases=True)


def merge_python_packages(
    bentofile_packages: Sequence[str],
    plugin_requirements: Sequence[str],
    plugin: str,
    bentofile_label: str = BENTOFILE_LABEL,
) -> list[str]:
    """The bentofile's packages followed by the plug-in's, each package once.

    A plug-in requirement equal to one already listed, satisfied by the exact pin already listed (`torch==2.13.0` by
    `torch==2.13.0+cu126`), or a bare name of a package already pinned, adds nothing. Raises MLOpsError naming both
    (the bentofile as `bentofile_label`) when the plug-in pins a package differently from the bentofile (or itself).
    """
    merged: dict[str, tuple[Requirement, str, str]] = {}  # canonical name -> (requirement, as written, source)
    sources = [(bentofile_label, bentofile_packages), (f"model plug-in {plugin!r}", plugin_requirements)]
    for source, packages in sources:
        for written in packages:
            requirement = _parsed(written, source)
            key = canonicalize_name(requirement.name)
            if key not in merged:
                merged[key] = (requirement, written, source)
                continue
            listed, listed_as, listed_in = merged[key]
            if _same(requirement, listed) or _unpinned(requirement) or _satisfied_by_exact_pin(requirement, listed):
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
    target: str | None = None,
) -> tuple[BentoArtifact, bool]:
    """Build `bento/` (service + bentofile) with the model tag and serving settings baked in as bento arguments.

    `target` picks the bentofile (`BENTOFILES`: "local" CPU torch, "cloud_run" CUDA torch); None takes
    `bento_target()` of the selected environment. The bento's Python packages are the bentofile's plus the
    `requirements` of the model `plugin` (a plug-in name or `module:Class`), merged by `merge_python_packages` (a
    conflicting pin raises MLOpsError). With a `version`, the bento is `<name>:<version>` and an existing one is
    reused (also when another process is building it right now: it is waited for); returns the artifact and whether
    it was reused (a cache hit: nothing rebuilt). Callers that pass a `version` derive it with the target.
    """
    bentoml = _bentoml()
    serving = serving_arguments() if serving is None else serving
    # Checked here, before anything is built: BentoML validates bento arguments only when it first imports the
    # service, so a second build in the same process would take bad settings silently.
    validate_service_arguments({**serving, "model_tag": model_tag})
    target = bento_target() if target is None else target
    if target not in BENTOFILES:
        raise MLOpsError(f"Unknown bento target {target!r}: use one of {', '.join(BENTOFILES)}.")
    try:
        # BentoML's own reading (YAML 1.1), as it reads the bentofile written from this one.
        bentofile = yaml.safe_load((settings.PROJECT_ROOT / BENTOFILES[target]).read_text())
    except yaml.YAMLError as error:
        raise ConfigError(BENTOFILES[target], [yaml_problem(error)]) from error
    python = dict(bentofile.get("python") or {})
    requirements = resolve_plugin(plugin).requirements if plugin else ()
    python["packages"] = merge_python_packages(
        python.get("packages") or [], requirements, plugin or "", BENTOFILES[target]
    )
    # Named up front, so the journal can say which item a killed build was writing.
    tag = str(bentoml.Tag(bentofile["name"], version) if version else bentoml.Tag(bentofile["name"]).make_new_version())
    with store_writes():
        if version is not None:
            try:
                existing = bentoml.bentos.get(tag)
                return BentoArtifact(model_tag, str(existing.tag), str(existing.path)), True
            except bentoml.exceptions.NotFound:
                pass
        # BentoML takes packages only from a bentofile, so the merged one is written next to nothing else; paths in
        # it (include/exclude) are relative to the build context, not to the file.
        with (
            _journal("bentos", tag),
            tempfile.TemporaryDirectory(prefix="bentofile-", dir=_temporary_root()) as directory,
        ):
            merged = Path(directory) / "bentofile.yaml"
            merged.write_text(yaml.safe_dump({**bentofile, "python": python}, sort_keys=False))
            bento = bentoml.bentos.build_bentofile(
                str(merged),
                build_ctx=str(settings.PROJECT_ROOT),
                labels=labels,
                args={**serving, "model_tag": model_tag},
                version=tag.partition(":")[2],
            )
    return BentoArtifact(model_tag=model_tag, bento_tag=str(bento.tag), bento_path=str(bento.path)), False


def bento_model_tag(bento_tag: str) -> str:
    """The model tag a bento was built to serve (its build argument)."""
    bentoml = _bentoml()
    try:
        return bentoml.bentos.get(bento_tag).info.args["model_tag"]
    except bentoml.exceptions.NotFound as error:
        raise FileNotFoundError(f"Bento {bento_tag} is not in the BentoML store; see `bentoml list`.") from error


def export_store_item(kind: str, tag: str, path: Path) -> Path:
    """Export a model (`kind` "models") or a bento ("bentos") from the store to one file at `path` with BentoML's
    export API (a bento's file carries its models too). Raises FileNotFoundError when the store lacks it."""
    bentoml = _bentoml()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Exporting a bento writes its models into the stored bento's folder for the time of the export: a store write.
    with store_writes():
        try:
            if kind == "models":
                bentoml.models.export_model(tag, str(path), output_format="bentomodel")
            else:
                bentoml.bentos.export_bento(tag, str(path), output_format="bento")
        except bentoml.exceptions.NotFound as error:
            raise FileNotFoundError(f"{kind[:-1].capitalize()} {tag} is not in the BentoML store: {error}") from error
    return path


def import_store_item(kind: str, tag: str, path: Path) -> bool:
    """Import the model or bento `tag` exported at `path` into the store, unless it is there already (then returns
    False). A killed import is recognised and removed like a killed build (the journal)."""
    bentoml = _bentoml()
    with store_writes():
        getter = bentoml.models.get if kind == "models" else bentoml.bentos.get
        try:
            getter(tag)
            return False
        except bentoml.exceptions.NotFound:
            pass
        with _journal(kind, tag):
            if kind == "models":
                bentoml.models.import_model(str(path), input_format="bentomodel")
            else:
                bentoml.bentos.import_bento(str(path), input_format="bento")
    return True
