"""Incremental rebuilds: nothing is recomputed unless its inputs or its code changed.

Code changes are made for real, in a copy of the project, and `mlops` runs from that copy in a subprocess.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from mlops_assets import settings
from mlops_assets.lib.data.manifest import file_sha256
from mlops_assets.lib.data.splits import assign_split

pytestmark = pytest.mark.e2e
FAST = "ops:\n  trained_model:\n    config: {epochs: 3}\n"


class Project:
    """A copy of the project with its own MLOPS_HOME, driven through the `mlops` command line."""

    def __init__(self, root: Path, dataset: Path) -> None:
        self.root, self.dataset, self.home = root, dataset, root / "home"
        for name in ("mlops_assets", "bento", "deployments"):
            shutil.copytree(settings.PROJECT_ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("pyproject.toml", "workspace.yaml"):
            shutil.copy(settings.PROJECT_ROOT / name, root / name)
        (root / "fast.yaml").write_text(FAST)
        # These tests are about what rebuilds, not about the promotion gate: let every 3-epoch model through.
        environment = root / "deployments" / "local.yaml"
        relaxed = (
            environment.read_text().replace("floor: 0.80", "floor: 0.0").replace("tolerance: 0.01", "tolerance: 1.0")
        )
        environment.write_text(relaxed.replace("per_class_margin: 0.05", "per_class_margin: 1.0"))
        # Whether nothing is stale: true after any `mlops rebuild` (it rebuilds until nothing is), false after a change.
        self.settled = False

    def mlops(self, *args: str) -> str:
        env = {**os.environ, "MLOPS_HOME": str(self.home), "PYTHONPATH": str(self.root)}
        env.pop("MLOPS_DATASET", None)
        command = [sys.executable, "-m", "mlops_assets.cli", *args, "--dataset", str(self.dataset)]
        command += ["--config", str(self.root / "fast.yaml")]
        completed = subprocess.run(command, env=env, cwd=self.root, capture_output=True, text=True, timeout=600)
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        return completed.stdout

    def rebuilt(self) -> list[str]:
        output = self.mlops("rebuild")
        self.settled = True
        if "nothing materialized" in output:
            return []
        return output.strip().splitlines()[-1].split(": ", 1)[1].split(", ")

    def edit(self, relative: str, old: str, new: str) -> None:
        self.settled = False
        path = self.root / relative
        source = path.read_text()
        assert old in source, f"{old!r} not in {relative}"
        path.write_text(source.replace(old, new, 1))

    def latest(self, asset: str) -> dict:
        with dg.DagsterInstance.from_config(str(self.home / "dagster")) as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        return {key: value.value for key, value in event.asset_materialization.metadata.items()}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, digits_subset: Path) -> Project:
    root = tmp_path_factory.mktemp("project")
    dataset = shutil.copytree(digits_subset, root / "dataset")
    built = Project(root, dataset)
    assert "SUCCESS" in built.mlops("run")
    built.settled = True
    return built


@pytest.fixture(autouse=True)
def settled_project(project: Project) -> Project:
    """Every test starts from a project where nothing is stale, whichever tests ran (or failed) before it."""
    if not project.settled:
        project.rebuilt()
    # Until this test's own last rebuild: a test that fails after changing data or code leaves it unsettled.
    project.settled = False
    return project


def test_after_a_full_build_nothing_is_stale(project: Project) -> None:
    assert project.rebuilt() == []


def test_touching_a_file_without_changing_it_rebuilds_nothing(project: Project) -> None:
    target = next(project.dataset.glob("3/*.png"))
    os.utime(target, (target.stat().st_atime + 1000, target.stat().st_mtime + 1000))
    assert project.rebuilt() == []


def test_a_docstring_edit_rebuilds_nothing(project: Project) -> None:
    project.edit(
        "mlops_assets/lib/models/training.py", '"""Reopen a stored package', '"""Reopen (edited) a stored package'
    )
    assert project.rebuilt() == []


def test_changing_only_evaluation_code_keeps_the_trained_model(project: Project) -> None:
    weights_before = project.latest("trained_model")["weights_sha256"]
    project.edit(
        "mlops_assets/lib/models/evaluation.py",
        "probabilities = model.predict_uint8(test.images)",
        "probabilities = model.predict_uint8(test.images, batch_size=128)",
    )
    # Same metrics, so the bento is a cache hit with an unchanged version and promotion has nothing to redo.
    assert project.rebuilt() == ["model_evaluation", "bento"]
    assert project.latest("bento")["cache_hit"] is True
    assert project.latest("trained_model")["weights_sha256"] == weights_before
    assert project.rebuilt() == []


def test_changing_the_training_loop_retrains(project: Project) -> None:
    project.edit("mlops_assets/lib/models/plugins/cnn.py", '"dropout": 0.25', '"dropout": 0.2')
    # monitoring_baseline follows the model (its baseline is of that model's answers).
    assert project.rebuilt() == ["trained_model", "model_evaluation", "monitoring_baseline", "bento", "model_promotion"]
    metadata = project.latest("trained_model")
    assert metadata["cache_hit"] is False
    assert "mlops_assets.lib.models.plugins.cnn" in metadata["code_version_inputs"]


def test_adding_an_image_rebuilds_the_chain_and_places_it_by_its_hash(project: Project) -> None:
    new_image = project.dataset / "7" / "brand-new.png"
    Image.fromarray(np.random.default_rng(11).integers(0, 255, (8, 8)).astype(np.uint8), mode="L").save(new_image)
    assert project.rebuilt() == [
        "raw_images",
        "validated_images",
        "trained_model",
        "model_evaluation",
        "monitoring_baseline",
        "bento",
        "model_promotion",
    ]
    validated = project.latest("validated_images")
    assert validated["num_decoded_now"] == 1, "only the new image is decoded; the others are reused by content hash"
    stats_path = project.home / validated["storage_path"] / "stats.csv"  # relative to the project's own home
    stats = {line.split(",")[0]: line.split(",")[2] for line in stats_path.read_text().splitlines()[1:]}
    assert stats["7/brand-new.png"] == assign_split(file_sha256(new_image))
    assert project.rebuilt() == []
