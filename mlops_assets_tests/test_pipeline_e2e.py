"""End to end: `mlops run` through Dagster, the bento served by a real BentoML server, called over HTTP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import httpx
import pytest

from mlops_assets import settings
from mlops_assets.defs.evaluation.assets import model_evaluation
from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.training.assets import trained_model
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.defs.validation.checks import validated_images_quality
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.bento_store import LocalBentoStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.registry import ModelRegistryResource
from mlops_assets_tests.conftest import free_port
from mlops_assets_tests.dataset_resources import dataset_store_under

pytestmark = pytest.mark.e2e
MLOPS = str(Path(sys.executable).parent / "mlops")


def _mlops(home: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLOPS_HOME": str(home)}
    env.pop("MLOPS_DATASET", None)
    return subprocess.run([MLOPS, *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def pipeline_home(tmp_path_factory: pytest.TempPathFactory, digits_subset: Path) -> tuple[Path, Path]:
    home = tmp_path_factory.mktemp("e2e_home")
    completed = _mlops(home, "run", "--dataset", str(digits_subset))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "SUCCESS" in completed.stdout
    assert "promotion:     version 1 is in production in local" in completed.stdout
    return home, digits_subset


def _latest_metadata(home: Path, asset: str) -> dict:
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None, f"{asset} was never materialized"
    return {key: value.value for key, value in event.asset_materialization.metadata.items()}


def test_run_records_every_asset_with_metadata_in_the_dagster_instance(pipeline_home) -> None:
    home, dataset = pipeline_home
    assert _latest_metadata(home, "raw_images")["num_images"] == len(scan_dataset(dataset).entries)
    evaluation = _latest_metadata(home, "model_evaluation")
    assert evaluation["accuracy"] > 0.85
    assert "confusion matrix" in evaluation["confusion_matrix"]
    trained, bento = _latest_metadata(home, "trained_model"), _latest_metadata(home, "bento")
    # The bento's lineage names exactly the weights trained and the accuracy evaluated.
    assert len(trained["weights_sha256"]) == 64
    assert bento["lineage"]["weights_sha256"] == trained["weights_sha256"]
    assert bento["lineage"]["metrics"]["accuracy"] == evaluation["accuracy"]
    assert bento["bento_tag"].startswith("image-classifier-service:")


def test_built_bento_serves_predictions_over_http(pipeline_home) -> None:
    home, dataset = pipeline_home
    bento_metadata = _latest_metadata(home, "bento")
    port = free_port()
    deployed = _mlops(home, "deploy", "local", "--port", str(port), timeout=300)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    try:
        manifest = scan_dataset(dataset)
        samples = [entry for entry in manifest.entries if entry.split == "test"][:8]
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=30) as client:
            files = [("images", (e.path, manifest.absolute_path(e).read_bytes(), "image/png")) for e in samples]
            response = client.post("/predict", files=files)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model_version"] == bento_metadata["model_tag"]
            assert len(body["predictions"]) == len(samples)
            correct = sum(p["label"] == e.label for p, e in zip(body["predictions"], samples, strict=True))
            assert correct >= len(samples) - 2
            for prediction in body["predictions"]:
                assert set(prediction["probabilities"]) == set(manifest.labels)
                assert prediction["confidence"] == max(prediction["probabilities"].values())

            single = client.post(
                "/predict", files={"images": ("x.png", manifest.absolute_path(samples[0]).read_bytes())}
            )
            assert single.status_code == 200, single.text
            alone, batched = single.json()["predictions"][0], body["predictions"][0]
            assert alone["label"] == batched["label"]
            assert alone["confidence"] == pytest.approx(batched["confidence"], abs=1e-5)

            not_an_image = client.post("/predict", files={"images": ("notes.png", b"hello, not an image")})
            assert not_an_image.status_code == 400, not_an_image.text
            assert "not a recognised image" in not_an_image.json()["error"]

            metadata = client.get("/metadata").json()
            assert metadata["model_version"] == bento_metadata["model_tag"]
            assert metadata["lineage"] == bento_metadata["lineage"]
            assert metadata["lineage"]["data_version"] == scan_dataset(dataset).data_version

            assert client.post("/predict", files=files[:1]).status_code == 200, "service must keep serving"

        listed = _mlops(home, "deployments", timeout=120)
        assert listed.returncode == 0, listed.stderr
        assert f"local: {bento_metadata['bento_tag']} at {url} (`mlops deploy local`, pid " in listed.stdout
        assert listed.stdout.endswith(")\n  health: ok\n"), listed.stdout
    finally:
        stopped = _mlops(home, "undeploy", "local", timeout=120)
    assert "Stopped" in stopped.stdout
    after_stop = _mlops(home, "deployments", timeout=120)
    assert after_stop.returncode == 0, after_stop.stderr
    after = after_stop.stdout
    assert after.endswith("local: nothing running (`mlops deploy local` starts a server)\n"), after
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)


def test_sample_data_reaches_the_target_accuracy(tmp_path: Path) -> None:
    result = dg.materialize(
        [raw_images, validated_images, trained_model, model_evaluation, validated_images_quality],
        resources={
            "dataset": FolderDatasetSource(),
            "artifacts": LocalArtifactStore(root=str(tmp_path)),
            "dataset_store": dataset_store_under(tmp_path),
            "bento_store": LocalBentoStore(),
            "registry": ModelRegistryResource(url=f"sqlite:///{tmp_path}/registry.db"),
        },
    )
    accuracy = result.output_for_node("model_evaluation").accuracy
    assert accuracy >= 0.95


_RELEASE_SCRIPT = """
import json
from mlops_assets import settings
settings.export_environment()
from mlops_assets.deploy_release import release_for, validated_data_of
from mlops_assets.lib.deploy.canary import spread_over_labels
from mlops_assets.model_store import version_model_path
from mlops_assets.registry_home import open_registry

release = release_for("staging")
with open_registry() as models:
    view = models.version(release.model_version)
data = validated_data_of(view.number, view.data_version, version_model_path(view))
test = data.load_split("test")
chosen = spread_over_labels(test.labels, len(release.canary))
print(json.dumps({
    "version": release.model_version,
    "bento_tag": release.bento_tag,
    "registry_bento_tag": view.bento_tag,
    "cases": [[case.image_path, case.expected_label] for case in release.canary],
    "true_labels": [data.labels[int(test.labels[index])] for index in chosen],
    "labels": list(data.labels),
}))
"""


def test_release_for_staging_builds_a_canary_from_the_versions_validated_data(pipeline_home) -> None:
    """The real release path after a real run: validated_images is found under its own derived version (not the raw
    data version the registry records), and the canary spans the labels although the test split is sorted by label."""
    home, _ = pipeline_home
    completed = subprocess.run(
        [sys.executable, "-c", _RELEASE_SCRIPT],
        env={**os.environ, "MLOPS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    release = json.loads(completed.stdout.strip().splitlines()[-1])
    assert release["version"] == 1
    assert release["bento_tag"] == release["registry_bento_tag"]
    limit = settings.environment_settings("local").deployments.stage("staging").canary_cases
    assert len(release["cases"]) == limit
    # Round-robin over the labels in order: the first cases are one image of each label, in label order.
    assert limit <= len(release["labels"])
    assert release["true_labels"] == release["labels"][:limit]
    assert all(Path(path).is_file() for path, _ in release["cases"])
    expected = [label for _, label in release["cases"]]
    assert sum(label == true for label, true in zip(expected, release["true_labels"], strict=True)) >= limit - 2
    dry = _mlops(home, "deploy", "staging", "--dry-run", timeout=300)
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert "Dry run: nothing was started or changed. It would serve:" in dry.stdout
    assert f"staging: version 1 ({release['bento_tag']})" in dry.stdout
