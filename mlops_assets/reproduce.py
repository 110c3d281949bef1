"""`mlops reproduce N`: rebuild registry version N from what it recorded and compare the weights.

The recorded git commit is checked out in a temporary worktree; the recorded data version is laid out from the dataset
store; `mlops run` of that commit trains with the recorded hyper-parameters (and validated_images' config) in a
temporary home, so nothing of this home changes. The weights' SHA-256 either matches the recorded one, or the report
says what differed from the recorded run: a dirty working tree, the device, the library versions.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlops_assets import settings
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.models.model_package import PACKAGE_FILE, read_package_document
from mlops_assets.lib.provenance import UNKNOWN
from mlops_assets.lib.registry.registry import VersionView
from mlops_assets.lib.runtime_info import differences, hardware_description, library_versions

# The rebuild's run may take as long as the original training; this only bounds a hang.
RUN_TIMEOUT_S = 6 * 3600
# Variables of this process that would point the rebuild at this home, its registry or its dataset.
_HOME_VARIABLES = ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME", "MLOPS_ENV")


class ReproduceError(MLOpsError):
    """A version cannot be rebuilt at all (no commit recorded, commit or data missing); nothing was changed."""


@dataclass
class Reproduction:
    """A rebuild of one version: what was recorded and what the rebuild gave (None: it never got to training)."""

    version: VersionView
    weights_sha256: str | None = None
    data_version: str | None = None
    device: str | None = None
    libraries: dict[str, str] = field(default_factory=dict)
    hardware: str = ""
    run_failed: str = ""

    @property
    def matched(self) -> bool:
        return self.weights_sha256 == self.version.weights_sha256

    def report(self) -> list[str]:
        """The verdict first, then every recorded difference that can explain a mismatch (or a note on a match)."""
        view = self.version
        if self.weights_sha256 is None:
            return [
                f"version {view.number} was NOT reproduced: the rebuild stopped before training.",
                *[f"  {line}" for line in self.run_failed.splitlines()[-15:]],
            ]
        lines = [
            f"version {view.number} {'reproduced' if self.matched else 'was NOT reproduced'}: weights SHA-256 "
            f"recorded {view.weights_sha256[:16]}, rebuilt {self.weights_sha256[:16]}"
            + (" (match)." if self.matched else " (different).")
        ]
        reasons = self.reasons()
        if self.matched:
            if view.git_dirty:
                lines.append(
                    "  note: the working tree was dirty when it was trained, yet the weights match: the uncommitted "
                    "changes did not change training."
                )
            return lines
        lines.append("  What differs from the recorded training:" if reasons else "  Nothing recorded differs:")
        lines += [f"  - {reason}" for reason in reasons]
        if not reasons:
            lines.append(
                "  - same commit (clean), data, hyper-parameters, device and libraries: training is not deterministic "
                "here (a plug-in without fixed seeds, or non-deterministic kernels on this device)."
            )
        return lines

    def reasons(self) -> list[str]:
        view = self.version
        found = []
        if view.git_dirty:
            found.append(
                f"dirty tree at training time: tracked files differed from commit {view.git_commit[:12]} when version "
                f"{view.number} was trained, so the code that trained it is in no commit; the rebuild used the commit"
            )
        elif view.git_dirty is None:
            found.append("git could not tell whether the working tree was clean when it was trained")
        if self.data_version is not None and self.data_version != view.data_version:
            found.append(f"data version: recorded {view.data_version[:16]}, rebuilt {self.data_version[:16]}")
        recorded_hardware = view.training_hardware or view.training_device
        if self.device != view.training_device or (view.training_hardware and self.hardware != view.training_hardware):
            found.append(f"different device: trained on {recorded_hardware}, rebuilt on {self.hardware}")
        if view.library_versions is None:
            found.append("library versions were not recorded for this version (registered before they were)")
        elif changed := differences(view.library_versions, self.libraries):
            found.append(f"different library versions: {', '.join(changed)}")
        return found


def run_config_for(view: VersionView) -> dict:
    """The run config that trains as version `view` was trained: its plug-in and hyper-parameters, and
    validated_images' config as its run gave it. The recorded device where it is the CPU; otherwise 'auto' (the
    report names a device that differs)."""
    from mlops_assets.defs.training.assets import TrainingConfig

    known = set(TrainingConfig.model_fields) - {"plugin", "plugin_params", "device"}
    training = {"plugin": view.plugin, **{key: value for key, value in view.hyperparameters.items() if key in known}}
    training["plugin_params"] = dict(view.hyperparameters.get("plugin_params") or {})
    training["device"] = "cpu" if view.training_device == "cpu" else "auto"
    ops = {"trained_model": {"config": training}}
    validation = (view.pipeline_config or {}).get("validated_images")
    if validation is not None:
        ops["validated_images"] = {"config": validation}
    return {"ops": ops}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(settings.PROJECT_ROOT), *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout


def _check_out(commit: str, destination: Path) -> None:
    try:
        _git("worktree", "add", "--detach", str(destination), commit)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = getattr(error, "stderr", "") or str(error)
        raise ReproduceError(
            f"Commit {commit} cannot be checked out from {settings.PROJECT_ROOT} ({detail.strip()}); fetch it "
            "(`git fetch`), or run `mlops reproduce` in a clone that has it."
        ) from None


def _remove_worktree(destination: Path) -> None:
    for args in (("worktree", "remove", "--force", str(destination)), ("worktree", "prune")):
        try:
            _git(*args)
        except (OSError, subprocess.CalledProcessError):
            continue


def _rebuilt_package(home: Path) -> Path | None:
    """The model package the rebuild's trained_model wrote (its home is new, so there is at most one)."""
    found = sorted((home / "artifacts" / "trained_model").glob(f"*/{PACKAGE_FILE}"))
    return found[0].parent if found else None


def reproduce(number: int, keep: bool = False, say: Callable[[str], None] = print) -> Reproduction:
    """Rebuild version `number` of this environment's registry and compare its weights (see the module). Raises
    ReproduceError when nothing can be rebuilt (no commit recorded, the commit or the data version missing)."""
    from mlops_assets.environments import opened
    from mlops_assets.registry_home import open_registry

    settings.export_environment()
    with open_registry() as models:
        view = models.version(number)
    if view.git_commit == UNKNOWN:
        raise ReproduceError(
            f"Version {number} records no git commit (git could not tell when it was trained), so the code that "
            "trained it cannot be checked out."
        )
    with opened("dataset_store") as store:
        if not store.has_manifest(view.data_version):
            raise ReproduceError(
                f"Data version {view.data_version[:16]} of version {number} is not in the dataset store "
                f"({store.uri()}): it was trained before data versions were kept. It cannot be rebuilt from here."
            )
        data = store.local_root(store.manifest(view.data_version), verify=True)
    workdir = Path(tempfile.mkdtemp(prefix="mlops-reproduce-"))
    code, home = workdir / "code", workdir / "home"
    try:
        _check_out(view.git_commit, code)
        config = workdir / "run.yaml"
        config.write_text(yaml.safe_dump(run_config_for(view), sort_keys=True))
        say(
            f"Rebuilding version {number}: commit {view.git_commit[:12]} (worktree {code}), data version "
            f"{view.data_version[:16]}, hyper-parameters {view.hyperparameters}, in the temporary home {home} ..."
        )
        env = {key: value for key, value in os.environ.items() if key not in _HOME_VARIABLES}
        env |= {"MLOPS_HOME": str(home), "PYTHONPATH": str(code), "MLOPS_ENV": "local"}
        command = [sys.executable, "-m", "mlops_assets.cli", "run", "--dataset", str(data), "--config", str(config)]
        completed = subprocess.run(
            command, cwd=code, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
        (workdir / "run.log").write_text(completed.stdout + completed.stderr)
        result = Reproduction(view, libraries=library_versions())
        package = _rebuilt_package(home)
        if package is None:
            result.run_failed = (completed.stdout + completed.stderr).strip()
            return result
        document = read_package_document(package)
        result.weights_sha256 = document["weights_sha256"]
        result.data_version = document["info"]["data_version"]
        result.device = document["info"]["settings"]["device"]
        result.hardware = hardware_description(result.device)
        return result
    finally:
        if keep:
            say(
                f"Kept the rebuild's worktree, home and log in {workdir}; remove them with "
                f"`git worktree remove --force {code}` and `rm -r {workdir}`."
            )
        else:
            _remove_worktree(code)
            shutil.rmtree(workdir, ignore_errors=True)
