"""Registered versions' models in the BentoML store: where each one is, and putting one back from its model package."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlops_assets import settings
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.models.model_package import MODEL_DIR, PACKAGE_FILE, directory_sha256
from mlops_assets.lib.provenance import UNKNOWN, dirty_label
from mlops_assets.lib.registry.registry import VersionView
from mlops_assets.packaging import _bentoml, store_model


class MissingModelError(MLOpsError, FileNotFoundError):
    """A registered version's model is not in the BentoML store; the message names the command that restores it."""


class RestoreError(MLOpsError):
    """A version's model cannot be put back in the store as recorded; nothing was stored."""


@dataclass(frozen=True)
class RestoreOutcome:
    """`restored` False: the store already held the model with the recorded weights, and nothing was copied."""

    version: int
    model_tag: str
    path: Path
    restored: bool


def version_model_path(view: VersionView) -> Path:
    """The model package of a registered version in the BentoML store, brought from the environment's bento store
    (GCS) when this machine's lacks it; raises MissingModelError naming `mlops models restore <version>` when it is
    found nowhere."""
    from mlops_assets.environments import opened
    from mlops_assets.resources.bento_store import BentoNotFoundError

    bentoml = _bentoml()
    try:
        with opened("bento_store") as store:
            store.ensure_model(view.model_tag)
        return Path(bentoml.models.get(view.model_tag).path)
    except (bentoml.exceptions.NotFound, BentoNotFoundError):
        raise MissingModelError(
            f"The model of version {view.number} ({view.status}), {view.model_tag}, is not in the BentoML store at "
            f"{settings.bentoml_home()}. Re-store it from its recorded model package with "
            f"`mlops models restore {view.number}`, then run again."
        ) from None


def store_labels(view: VersionView) -> dict[str, str]:
    """The BentoML labels the `bento` asset gives a version's model, from what the registry recorded."""
    return {
        "data_version": view.data_version[:16],
        "git_commit": view.git_commit[:12],
        "git_dirty": dirty_label(view.git_dirty),
        "plugin": view.plugin,
        "accuracy": f"{view.metrics['accuracy']:.4f}",
    }


def store_lineage(view: VersionView) -> dict:
    """The BentoML metadata (lineage) the `bento` asset gives a version's model, from what the registry recorded."""
    return {
        "data_version": view.data_version,
        # As the bento asset names it: NAME@NUMBER, else the folder's path, else unknown.
        "dataset": view.dataset_reference or view.dataset_source or UNKNOWN,
        "weights_sha256": view.weights_sha256,
        "plugin": view.plugin,
        "hyperparameters": view.hyperparameters,
        "training_seconds": view.training_seconds,
        "training_device": view.training_device,
        "code_versions": view.code_versions,
        "git_commit": view.git_commit,
        "git_dirty": view.git_dirty if view.git_dirty is not None else UNKNOWN,
        "dagster_run_id": view.dagster_run_id,
        "metrics": {
            "accuracy": view.metrics["accuracy"],
            "macro_f1": view.metrics["macro_f1"],
            "num_test_images": view.metrics["num_examples"],
        },
    }


def _weights(package: Path) -> str:
    return directory_sha256(package / MODEL_DIR) if (package / MODEL_DIR).is_dir() else "none (no model/ folder)"


def _local_package(view: VersionView) -> Path:
    """The recorded model package as a local folder: a path as it is; a package kept in the environment's artifact
    store on GCS (`gs://.../artifacts/trained_model/<key>`) copied to the local cache. Raises RestoreError when it
    is not published there."""
    from mlops_assets.lib.storage.gcs import is_gcs_url

    if not is_gcs_url(view.package_path):
        return Path(view.package_path)
    from mlops_assets.environments import opened

    key = view.package_path.rstrip("/").rpartition("/")[2]
    with opened("artifacts") as artifacts:
        found = artifacts.fetch("trained_model", key)
    if found is None:
        raise RestoreError(
            f"Version {view.number}'s recorded model package {view.package_path} is not in the artifact store, so "
            f"{view.model_tag} cannot be restored from it. Rebuild the model: `mlops run` on the same data, code and "
            f"config trains bit-identical weights on the CPU ({view.weights_sha256[:16]})."
        )
    return found


def restore_version(view: VersionView) -> RestoreOutcome:
    """Put a registered version's model back in the BentoML store under its recorded tag, from its recorded model
    package (`package_path`), with the recorded labels and lineage.

    The package's weights must hash to the recorded SHA-256, before and after the copy. A model already in the store
    with those weights is left alone (restored=False). Raises RestoreError when the package is gone or differs, or
    when the store holds other weights under the tag; nothing is stored then.
    """
    bentoml = _bentoml()
    try:
        existing = bentoml.models.get(view.model_tag)
    except bentoml.exceptions.NotFound:
        existing = None
    if existing is not None:
        found = _weights(Path(existing.path))
        if found != view.weights_sha256:
            raise RestoreError(
                f"The BentoML store holds {view.model_tag} with weights {found[:16]}, not the recorded "
                f"{view.weights_sha256[:16]} of version {view.number}: the store's copy is damaged. Delete it "
                f"(`bentoml models delete {view.model_tag}`, with BENTOML_HOME={settings.bentoml_home()}), then "
                f"`mlops models restore {view.number}` again."
            )
        return RestoreOutcome(view.number, view.model_tag, Path(existing.path), restored=False)
    package = _local_package(view)
    if not (package / PACKAGE_FILE).is_file():
        raise RestoreError(
            f"Version {view.number}'s recorded model package {package} is gone, so {view.model_tag} cannot be "
            "restored from it. Restore that folder from a backup of this home, or rebuild the model: on the CPU, "
            f"`mlops run` on the same data, code and config trains bit-identical weights ({view.weights_sha256[:16]})."
        )
    found = _weights(package)
    if found != view.weights_sha256:
        raise RestoreError(
            f"Version {view.number}'s recorded model package {package} holds weights {found[:16]}, not the recorded "
            f"{view.weights_sha256[:16]}; it is not the registered model, so nothing was stored."
        )
    name, _, version = view.model_tag.partition(":")
    lineage = {
        **store_lineage(view),
        "restored": {"from": str(package), "by": getpass.getuser(), "at": datetime.now(UTC).isoformat()},
    }
    tag = store_model(package, name, version, store_labels(view), lineage)
    path = Path(bentoml.models.get(tag).path)
    copied = _weights(path)
    if tag != view.model_tag or copied != view.weights_sha256:
        bentoml.models.delete(tag)
        raise RestoreError(
            f"The copy of {package} in the store as {tag} holds weights {copied[:16]}, not the recorded "
            f"{view.weights_sha256[:16]}; it was deleted again. Check the disk under {settings.bentoml_home()}."
        )
    return RestoreOutcome(view.number, view.model_tag, path, restored=True)
