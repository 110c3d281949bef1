"""What a stage should run: the registry's version for it, as a Release with its canary cases, the gate between
staging and production (production only takes a version whose staging canary passed), and `deploy_stage`, the one
deployment path of `mlops deploy` and the deployment assets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets import settings
from mlops_assets.lib.deploy.canary import load_cases, save_cases
from mlops_assets.lib.deploy.release import CanaryCase, DeploymentError, DeploymentRecord, Release
from mlops_assets.lib.registry.schema import DISABLED, PRODUCTION, STAGING

if TYPE_CHECKING:
    from mlops_assets.lib.data.validated_data import ValidatedDataset


def canary_cases(model_version: int, limit: int = 8) -> tuple[CanaryCase, ...]:
    """`limit` held-out test images of the validated data the version was trained on, spread round-robin over its
    labels (PNG files under MLOPS_HOME/deployments/canary/v<N>/), with the label the version's own model predicts for
    each, made once and kept. Raises DeploymentError when the version's data or model is kept nowhere."""
    directory = settings.deployments_dir() / "canary" / f"v{model_version}"
    recorded = load_cases(directory)
    if recorded is not None:
        return recorded[:limit]
    import numpy as np
    from PIL import Image

    from mlops_assets.lib.deploy.canary import spread_over_labels
    from mlops_assets.lib.models.model_package import load_package
    from mlops_assets.model_store import version_model_path
    from mlops_assets.registry_home import open_registry

    with open_registry() as models:
        view = models.version(model_version)
    package = version_model_path(view)
    test = validated_data_of(view.number, view.data_version, package).load_split("test")
    indices = spread_over_labels(test.labels, limit)
    images = test.images[indices]
    model = load_package(package, device="cpu")
    predicted = model.predict_uint8(images).argmax(axis=1)
    directory.mkdir(parents=True, exist_ok=True)
    cases = []
    for index, (image, label) in enumerate(zip(images, predicted, strict=True)):
        pixels = np.moveaxis(image, 0, -1)
        path = directory / f"{index:03d}.png"
        Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)
        cases.append(CanaryCase(str(path), str(model.labels[int(label)])))
    save_cases(directory, cases)
    return tuple(cases)


def validated_data_of(model_version: int, data_version: str, package: Path) -> ValidatedDataset:
    """The validated_images artifact the version's model was trained on (a local copy). validated_images is stored
    under its own derived version, not the raw `data_version` the registry records, so it is found by following the
    event log from the trained_model materialization (named by the package's recorded version) to the
    validated_images one it read. Raises DeploymentError when the event log or the artifact store no longer has it."""
    from mlops_assets.defs.training_inputs import validated_version_read_by
    from mlops_assets.environments import opened
    from mlops_assets.lib.data.validated_data import load_validated_dataset
    from mlops_assets.lib.models.model_package import read_package_document

    trained_version = read_package_document(package)["info"].get("version") or ""
    with settings.open_instance() as instance:
        key = validated_version_read_by(instance, trained_version) if trained_version else None
    rerun = "rerun the pipeline on that dataset (`mlops run`) so its validated data is stored again."
    if key is None:
        raise DeploymentError(
            f"The Dagster event log no longer tells which validated data version {model_version} was trained on "
            f"(raw data {data_version[:12]}), so there are no held-out images for its canary; {rerun}"
        )
    with opened("artifacts") as artifacts:
        stored = artifacts.fetch("validated_images", key)
    if stored is None:
        raise DeploymentError(
            f"The validated data of version {model_version} (validated_images {key[:12]}, raw data "
            f"{data_version[:12]}) is not in the artifact store, so there are no held-out images for its canary; "
            f"{rerun}"
        )
    data = load_validated_dataset(Path(stored))
    if data.data_version != data_version:
        raise DeploymentError(
            f"validated_images {key[:12]} holds raw data {data.data_version[:12]}, but version {model_version} was "
            f"trained on {data_version[:12]}; {rerun}"
        )
    return data


def due_version(stage: str) -> tuple[int | None, str | None]:
    """The registry's version `stage` should serve, with the registry status it holds, as (number, status): the
    holder of the stage's own status; for staging, where the environment's promotion policy is automatic and no
    version holds staging, the production holder (the pipeline moves a version that passed the gate through staging
    to production in one step, so staging is the first place it is deployed). (None, None) when none is due."""
    from mlops_assets.registry_home import open_registry

    automatic = settings.environment_settings().promotion.staging_to_production == "automatic"
    with open_registry() as models:
        holder, status = models.holder(stage), stage
        if holder is None and stage == STAGING and automatic:
            holder, status = models.holder(PRODUCTION), PRODUCTION
    return (holder.number, status) if holder is not None else (None, None)


def target_version(stage: str) -> int | None:
    """The registry's version `stage` should serve (see `due_version`); None when no version is due there."""
    return due_version(stage)[0]


def already_live(stage: str, version: int | None = None) -> DeploymentRecord | None:
    """What `stage` serves when it is `version` (default: the registry's version due there), healthy and not
    disabled, so that deploying it again would only restart it; None otherwise (deploy: start, fix or refuse)."""
    from mlops_assets.registry_home import open_registry
    from mlops_assets.resources.deployer import deployer_for

    version = version if version is not None else target_version(stage)
    deployer = deployer_for(stage, settings.environment_settings())
    live = deployer.status()
    if version is None or live is None or live.model_version != version or deployer.health():
        return None
    with open_registry() as models:
        if models.version(version).status == DISABLED:
            return None  # deploy_stage refuses it, saying so
    return live


def release_for(stage: str, version: int | None = None) -> Release:
    """The Release of `version` (default: `target_version(stage)`) for `stage`; raises DeploymentError when no
    version is due there or the version is disabled."""
    from mlops_assets.registry_home import open_registry

    version = version if version is not None else target_version(stage)
    if version is None:
        raise DeploymentError(
            f"No version is in {stage} in the registry; promote one (`mlops models promote N --to {stage}`) "
            "or pass --version N."
        )
    with open_registry() as models:
        view = models.version(version)
    if view.status == DISABLED:
        raise DeploymentError(f"Version {view.number} is disabled; enable it (`mlops models enable {view.number}`).")
    limit = settings.environment_settings().deployments.stage(stage).canary_cases
    return Release(stage, view.number, view.bento_tag, canary_cases(view.number, limit))


def alert_failure(stage: str, action: str, error: Exception) -> None:
    """Send a DEPLOYMENT_FAILED alert through the environment's alert channels (the alert log always)."""
    from mlops_assets.defs.monitoring.alerting import send
    from mlops_assets.lib.monitoring.alerts import DEPLOYMENT_FAILED, Alert

    environment = settings.environment_name()
    send(Alert(DEPLOYMENT_FAILED, f"{action} of {stage} failed: {error}", environment, {"stage": stage}))


def deploy_stage(stage: str, version: int | None = None, dry_run: bool = False) -> DeploymentRecord:
    """Deploy `version` (default: the registry's version due in `stage`) after the stage's `after` gate, and
    remember a passed canary; the one path of `mlops deploy` and the deployment assets. A failure is alerted
    (`deployment failed`) and raised as DeploymentError; a dry run starts, changes and alerts nothing."""
    from mlops_assets.resources.deployer import deployer_for

    settings.export_environment()
    try:
        release = release_for(stage, version)
        check_after(stage, release.model_version)
        record = deployer_for(stage, settings.environment_settings()).deploy(release, dry_run=dry_run)
    except DeploymentError as error:
        if not dry_run:
            alert_failure(stage, "deployment", error)
        raise
    if not dry_run and record.canary is not None and record.canary.passed:
        record_canary_passed(stage, record.model_version)
    return record


def refuse_disabled(model_version: int) -> None:
    """Raise DeploymentError when `model_version` is disabled in the registry (nothing may serve it)."""
    from mlops_assets.registry_home import open_registry

    with open_registry() as models:
        status = models.version(model_version).status
    if status == DISABLED:
        raise DeploymentError(
            f"Version {model_version} is disabled in the registry, so the main URL does not go back to it; nothing "
            f"was changed. Enable it (`mlops models enable {model_version}`) or deploy another version "
            "(`mlops deploy STAGE --version N`)."
        )


def rollback_stage(stage: str) -> DeploymentRecord:
    """Move `stage`'s main URL back to its previous revision, refused (nothing changed) when that revision's version
    is disabled in the registry; a failure is alerted (`deployment failed`) and raised as DeploymentError."""
    from mlops_assets.resources.deployer import deployer_for

    settings.export_environment()
    try:
        return deployer_for(stage, settings.environment_settings()).rollback(refuse_disabled)
    except DeploymentError as error:
        alert_failure(stage, "rollback", error)
        raise


def disagreement(stage: str, with_health: bool = True) -> str | None:
    """How the registry and what is live in `stage` disagree, with the command that fixes it; None when they
    agree (the version due there serves, healthy unless `with_health` is False, or nothing is due and nothing
    serves)."""
    from mlops_assets.resources.deployer import deployer_for

    due, status = due_version(stage)
    # Said outright when staging takes the production version: `mlops models list` shows it as production only.
    why = f"the registry's {status} version" + (
        "; staging follows production under the automatic promotion policy" if status != stage else ""
    )
    deployer = deployer_for(stage, settings.environment_settings())
    live = deployer.status()
    if live is None:
        if due is None:
            return None
        return (
            f"Nothing is deployed in {stage}; version {due} is due there ({why}); deploy it with "
            f"`mlops deploy {stage}`."
        )
    if due is None:
        return (
            f"Version {live.model_version} is live in {stage} at {live.url}, but no version is in {stage} in the "
            f"registry; promote one (`mlops models promote N --to {stage}`) or run `mlops undeploy {stage}`."
        )
    if live.model_version != due:
        # `mlops models rollback` moves production back: a way to keep the live version only where production's
        # version is the one due.
        keep = (
            f" (or `mlops models rollback` if version {live.model_version} should stay)" if status == PRODUCTION else ""
        )
        return (
            f"Version {due} is due in {stage} ({why}), but version {live.model_version} is live at {live.url}; "
            f"deploy it with `mlops deploy {stage}`{keep}."
        )
    problems = deployer.health() if with_health else []
    if problems:
        return f"Version {due} is deployed in {stage} but not healthy: {'; '.join(problems)}."
    return None


def _passed_file(stage: str) -> Path:
    return settings.deployments_dir() / settings.environment_name() / stage / "canary_passed.json"


def record_canary_passed(stage: str, model_version: int) -> None:
    """Remember that `model_version` passed its canary in `stage` (what production's `after` requires)."""
    path = _passed_file(stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    passed = set(json.loads(path.read_text())) if path.exists() else set()
    path.write_text(json.dumps(sorted(passed | {model_version})))


def check_after(stage: str, model_version: int) -> None:
    """Raise DeploymentError unless the stage's `after` stage passed its canary on `model_version`."""
    after = settings.environment_settings().deployments.stage(stage).after
    if after is None:
        return
    path = _passed_file(after)
    if not path.exists() or model_version not in json.loads(path.read_text()):
        raise DeploymentError(
            f"Version {model_version} has not passed its canary in {after}; deploy it there first "
            f"(`mlops deploy {after} --version {model_version}`)."
        )
