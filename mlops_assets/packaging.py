"""BentoML glue: store a model package in the BentoML model store and build the service bento."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_assets import settings
from mlops_assets.lib.serving.serving_arguments import validate_service_arguments

BENTOFILE = settings.PROJECT_ROOT / "bento" / "bentofile.yaml"
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


def build_service_bento(
    model_tag: str, labels: dict[str, str], serving: dict[str, Any] | None = None, version: str | None = None
) -> tuple[BentoArtifact, bool]:
    """Build `bento/` (service + bentofile) with the model tag and serving settings baked in as bento arguments.

    With a `version`, the bento is `<name>:<version>` and an existing one is reused; returns the artifact and
    whether it was reused (a cache hit: nothing rebuilt).
    """
    bentoml = _bentoml()
    serving = serving_arguments() if serving is None else serving
    # Checked here, before anything is built: BentoML validates bento arguments only when it first imports the
    # service, so a second build in the same process would take bad settings silently.
    validate_service_arguments({**serving, "model_tag": model_tag})
    if version is not None:
        name = yaml.safe_load(BENTOFILE.read_text())["name"]
        try:
            existing = bentoml.bentos.get(f"{name}:{version}")
            return BentoArtifact(model_tag, str(existing.tag), str(existing.path)), True
        except bentoml.exceptions.NotFound:
            pass
    bento = bentoml.bentos.build_bentofile(
        str(BENTOFILE),
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
