"""A model plug-in's `requirements` reach the bento's Python packages, merged with the bentofile's."""

from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.defs.evaluation.assets import model_evaluation
from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.packaging.assets import bento
from mlops_assets.defs.training.assets import trained_model
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.models.plugins import ALLOW_IMPORT_PATHS_ENV
from mlops_assets.lib.models.plugins.softmax import SoftmaxRegressionPlugin
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets.packaging import merge_python_packages
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.bento_store import LocalBentoStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.registry import ModelRegistryResource
from mlops_assets_tests.dataset_resources import dataset_store_under

BENTOFILE_PACKAGES = [
    "torch==2.13.0",
    "numpy>=1.26,<3",
    "pillow>=11,<14",
    "multipart>=2.0.1,<3",
    "google-cloud-storage>=3.17,<4",
]


class YamlSoftmaxPlugin(SoftmaxRegressionPlugin):
    """The softmax model, declaring one package the bentofile lacks and two it already has."""

    # Its import path, so the package it saves resolves back to this class.
    name = f"{__name__}:YamlSoftmaxPlugin"
    requirements = ("PyYAML>=6,<7", "numpy", "torch==2.13.0")


def test_plugin_packages_are_appended_once_and_a_bare_name_defers_to_the_pin() -> None:
    merged = merge_python_packages(BENTOFILE_PACKAGES, YamlSoftmaxPlugin.requirements, "yaml-softmax")
    assert merged == [*BENTOFILE_PACKAGES, "PyYAML>=6,<7"]
    # Names compare as PyPI does (case, '-', '_' and '.' are one).
    assert merge_python_packages(["py_yaml>=6"], ["Py-YAML>=6"], "p") == ["py_yaml>=6"]
    # A bare name in the bentofile gives way to the plug-in's pin, in the bentofile's place.
    assert merge_python_packages(["numpy", "pillow"], ["numpy>=2"], "p") == ["numpy>=2", "pillow"]


def test_a_conflicting_pin_is_refused_naming_both() -> None:
    with pytest.raises(MLOpsError) as refused:
        merge_python_packages(BENTOFILE_PACKAGES, ["torch==2.5.0"], "old-torch")
    assert str(refused.value) == (
        "model plug-in 'old-torch' requires 'torch==2.5.0', which conflicts with 'torch==2.13.0' from "
        "bento/bentofile.yaml. A bento installs one version of each package: make the two pins agree."
    )
    with pytest.raises(MLOpsError, match=r"'numpy<2', which conflicts with 'numpy>=2' from model plug-in 'twice'"):
        merge_python_packages([], ["numpy>=2", "numpy<2"], "twice")


def test_an_invalid_requirement_is_refused_naming_it() -> None:
    with pytest.raises(MLOpsError, match=r"model plug-in 'typo' lists 'numpy=>2', which is not a valid requirement"):
        merge_python_packages(BENTOFILE_PACKAGES, ["numpy=>2"], "typo")


def test_the_bento_asset_installs_the_plugin_requirements_and_records_an_unknown_git_state(
    digits_subset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bentoml

    # Not a git checkout as far as git can tell: the commit and the dirty flag are unknown, never "clean".
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "no-such-git-dir"))
    # The plug-in is given by import path, which only the operator setting allows.
    monkeypatch.setenv(ALLOW_IMPORT_PATHS_ENV, "1")
    registry_url = f"sqlite:///{tmp_path}/registry.db"
    result = dg.materialize(
        [raw_images, validated_images, trained_model, model_evaluation, bento],
        resources={
            "dataset": FolderDatasetSource(root=str(digits_subset)),
            "artifacts": LocalArtifactStore(root=str(tmp_path / "artifacts")),
            "dataset_store": dataset_store_under(tmp_path),
            "bento_store": LocalBentoStore(),
            "registry": ModelRegistryResource(url=registry_url),
        },
        run_config={"ops": {"trained_model": {"config": {"plugin": YamlSoftmaxPlugin.name, "epochs": 1}}}},
    )
    artifact = result.output_for_node("bento")
    built = bentoml.bentos.get(artifact.bento_tag)
    requirements = (Path(built.path) / "env" / "python" / "requirements.txt").read_text().splitlines()
    assert requirements == [*BENTOFILE_PACKAGES, "PyYAML>=6,<7", f"bentoml=={bentoml.__version__}"]

    assert (built.info.labels["git_commit"], built.info.labels["git_dirty"]) == ("unknown", "unknown")
    lineage = bentoml.models.get(artifact.model_tag).info.metadata
    assert (lineage["git_commit"], lineage["git_dirty"]) == ("unknown", "unknown")
    with ModelRegistry(registry_url, "local") as models:
        version = models.find_by_model_tag(artifact.model_tag)
    assert (version.plugin, version.git_commit, version.git_dirty) == (YamlSoftmaxPlugin.name, "unknown", None)
