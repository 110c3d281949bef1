"""The production model lost from the BentoML store: evaluation names `mlops models restore N`, which puts it back
from its recorded model package (weights verified), and the next run evaluates it again."""

import dataclasses
import shutil
from pathlib import Path

import pytest

from mlops_assets import settings
from mlops_assets.cli import FAILED, main
from mlops_assets.lib.errors import DEBUG_VARIABLE
from mlops_assets.lib.models.model_package import MODEL_DIR, directory_sha256
from mlops_assets.lib.registry.registry import ModelRegistry, VersionView
from mlops_assets.model_store import RestoreError, restore_version

pytestmark = pytest.mark.e2e
# A few epochs on 40 digits per class pass the local promotion floor; the seed keeps this model's tag to this module.
RUN_CONFIG = "ops: {trained_model: {config: {epochs: 5, learning_rate: 0.01, seed: 12}}}\n"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, digits_subset: Path) -> tuple[list[str], str, VersionView]:
    """`mlops run` in this process with a registry of its own: the command, the registry and version 1 in
    production."""
    directory = tmp_path_factory.mktemp("restore")
    config = directory / "run.yaml"
    config.write_text(RUN_CONFIG)
    registry_url = f"sqlite:///{directory / 'registry.db'}"
    command = ["run", "--dataset", str(digits_subset), "--config", str(config)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_REGISTRY_URL", registry_url)
        patch.delenv("MLOPS_DATASET", raising=False)
        patch.setenv(DEBUG_VARIABLE, "")
        assert main(command) == 0
    with ModelRegistry(registry_url, "local") as models:
        production = models.production()
    return command, registry_url, production


def _summary_lines(out: str, prefix: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.strip().startswith(prefix)]


def test_a_production_model_lost_from_the_store_is_restored_and_evaluated_again(
    first_run, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    command, registry_url, production = first_run
    monkeypatch.setenv("MLOPS_REGISTRY_URL", registry_url)
    monkeypatch.delenv("MLOPS_DATASET", raising=False)
    monkeypatch.setenv(DEBUG_VARIABLE, "")
    import bentoml  # after the first run: BentoML reads its home (the session's) on first import

    tag = production.model_tag
    stored = bentoml.models.get(tag)
    labels, lineage = dict(stored.info.labels), dict(stored.info.metadata)
    capsys.readouterr()

    bentoml.models.delete(tag)  # the store lost the production model
    assert main(command) == FAILED
    assert _summary_lines(capsys.readouterr().out, "step ") == [
        "step model_evaluation failed: mlops_assets.model_store.MissingModelError: The model of version "
        f"{production.number} (production), {tag}, is not in the BentoML store at {settings.bentoml_home()}. "
        f"Re-store it from its recorded model package with `mlops models restore {production.number}`, then run "
        "again."
    ]

    assert main(["models", "restore", str(production.number)]) == 0
    assert capsys.readouterr().out == (
        f"Restored version {production.number}'s model {tag} into the BentoML store from {production.package_path} "
        f"(weights SHA-256 {production.weights_sha256[:16]}... verified).\n"
    )
    restored = bentoml.models.get(tag)
    assert directory_sha256(Path(restored.path) / MODEL_DIR) == production.weights_sha256
    assert dict(restored.info.labels) == labels
    restored_lineage = dict(restored.info.metadata)
    assert restored_lineage.pop("restored")["from"] == production.package_path
    assert restored_lineage == lineage

    assert main(["models", "restore", str(production.number)]) == 0
    assert capsys.readouterr().out == (
        f"Version {production.number}'s model {tag} is already in the BentoML store with the recorded weights "
        f"(SHA-256 {production.weights_sha256[:16]}...); nothing to restore.\n"
    )

    assert main(command) == 0  # evaluation re-evaluates the restored champion on the same split
    out = capsys.readouterr().out
    assert _summary_lines(out, "champion:") == [f"champion:      version {production.number} ({tag})"]
    assert _summary_lines(out, "accuracy ") == [
        f"accuracy {production.metrics['accuracy']:.4f} on the same test split; candidate - champion +0.0000"
    ]


def test_a_version_is_not_restored_from_a_missing_or_different_package(first_run, tmp_path: Path) -> None:
    _, _, production = first_run
    import bentoml  # after the first run: BentoML reads its home (the session's) on first import

    gone = dataclasses.replace(production, model_tag="image-classifier:not-in-store-1", package_path=str(tmp_path))
    with pytest.raises(RestoreError) as missing:
        restore_version(gone)
    assert str(missing.value) == (
        f"Version {production.number}'s recorded model package {tmp_path} is gone, so image-classifier:not-in-store-1 "
        "cannot be restored from it. Restore that folder from a backup of this home, or rebuild the model: on the "
        f"CPU, `mlops run` on the same data, code and config trains bit-identical weights "
        f"({production.weights_sha256[:16]})."
    )

    altered = tmp_path / "package"
    shutil.copytree(production.package_path, altered)
    weights = next(path for path in sorted((altered / MODEL_DIR).rglob("*")) if path.is_file())
    weights.write_bytes(weights.read_bytes() + b"\0")
    different = dataclasses.replace(production, model_tag="image-classifier:not-in-store-2", package_path=str(altered))
    with pytest.raises(RestoreError) as differs:
        restore_version(different)
    assert str(differs.value) == (
        f"Version {production.number}'s recorded model package {altered} holds weights "
        f"{directory_sha256(altered / MODEL_DIR)[:16]}, not the recorded {production.weights_sha256[:16]}; it is not "
        "the registered model, so nothing was stored."
    )
    with pytest.raises(bentoml.exceptions.NotFound):
        bentoml.models.get("image-classifier:not-in-store-2")
