"""The whole chain with MLOPS_ENV=staging on the GCS emulator and a real PostgreSQL server: the dataset read from GCS,
artifacts, step outputs, compute logs, the model and the bento kept on GCS, runs and the registry on PostgreSQL,
nothing on the machine but caches; then, on a machine with empty caches, the bento fetched back from GCS and served,
its prediction logs uploaded to GCS."""

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx
import pytest

from mlops_assets.environments import opened
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets.lib.serving.prediction_store import records
from mlops_assets.lib.storage.gcs import MARKER
from mlops_assets_tests.cli_processes import FAST_CONFIG, brightness_dataset
from mlops_assets_tests.conftest import free_port
from mlops_assets_tests.gcs_emulator import GcsEmulator
from mlops_assets_tests.postgres_server import PostgresServer

pytestmark = pytest.mark.e2e
MLOPS = str(Path(sys.executable).parent / "mlops")
CHAIN = ("raw_images", "validated_images", "trained_model", "model_evaluation", "bento", "model_promotion")
# What may stay on the machine: caches (refilled from GCS when missing), the BentoML store (a cache of the bentos
# on GCS), lock files, the generated instance config, and a local server's log.
CACHES = ("cache", "bentoml", "locks", "logs")
GENERATED = ("dagster-staging/dagster.yaml",)
# Requests sent to the server: at the bento's 10 % sampling, the chance that none is logged is 0.9 ** 100 < 1e-4.
REQUESTS = 100


@dataclass
class Staging:
    home: Path
    env: dict[str, str]
    store: str  # the bucket below which staging keeps everything, at prefix `staging`
    dataset: Path  # the local original of the files uploaded to GCS
    run_stdout: str


def _mlops(staging: Staging, *args: str) -> subprocess.CompletedProcess:
    completed = subprocess.run([MLOPS, *args], env=staging.env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def _files_outside_caches(home: Path) -> list[str]:
    found = [path.relative_to(home).as_posix() for path in home.rglob("*") if path.is_file()]
    return [name for name in found if name.split("/")[0] not in CACHES and name not in GENERATED]


@pytest.fixture(scope="module")
def staging(
    gcs_emulator: GcsEmulator, postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Staging:
    root = tmp_path_factory.mktemp("staging")
    dataset = brightness_dataset(root / "bright", seed=3)
    data_bucket, store = gcs_emulator.new_bucket("data"), gcs_emulator.new_bucket("store")
    url = gcs_emulator.upload_folder(dataset, data_bucket, "datasets/bright")
    env = {key: value for key, value in os.environ.items() if key not in ("MLOPS_DATASET", "DAGSTER_HOME")}
    env |= {
        "MLOPS_HOME": str(root / "home"),
        "MLOPS_ENV": "staging",
        "MLOPS_STORAGE_URL": f"gs://{store}/staging",
        "MLOPS_REGISTRY_URL": postgres_server.new_database("staging_registry"),
        "MLOPS_DAGSTER_POSTGRES_URL": postgres_server.new_database("staging_dagster").replace(
            "postgresql://", "postgresql+psycopg2://"
        ),
    }
    config = root / "fast.yaml"
    config.write_text(FAST_CONFIG)
    staging = Staging(root / "home", env, store, dataset, "")
    staging.run_stdout = _mlops(staging, "run", "--dataset", url, "--config", str(config)).stdout
    return staging


def test_the_run_keeps_everything_on_gcs_and_postgresql_and_only_caches_on_the_machine(
    staging: Staging, gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "SUCCESS" in staging.run_stdout
    assert "promotion:     version 1 is in staging in staging;" in staging.run_stdout

    with ModelRegistry(staging.env["MLOPS_REGISTRY_URL"], "staging") as models:
        (version,) = models.versions()
    assert (version.number, version.status) == (1, "staging")
    package_key = version.package_path.rpartition("/")[2]
    assert version.package_path == f"gs://{staging.store}/staging/artifacts/trained_model/{package_key}"

    monkeypatch.setenv("MLOPS_DAGSTER_POSTGRES_URL", staging.env["MLOPS_DAGSTER_POSTGRES_URL"])
    with dg.DagsterInstance.from_config(str(staging.home / "dagster-staging")) as instance:
        (run,) = instance.get_run_records()
        assert run.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        run_id = run.dagster_run.run_id
        for asset in CHAIN:
            assert instance.get_latest_materialization_event(dg.AssetKey(asset)).run_id == run_id

    objects = gcs_emulator.objects(staging.store, "staging/")
    for kind in ("validated_images", "trained_model", "model_evaluation"):
        markers = [name for name in objects if name.startswith(f"staging/artifacts/{kind}/") and name.endswith(MARKER)]
        assert len(markers) == 1, (kind, markers)
    assert f"staging/artifacts/trained_model/{package_key}/model/softmax.npz" in objects
    name, _, tag_version = version.bento_tag.partition(":")
    model_name, _, model_version = version.model_tag.partition(":")
    assert f"staging/bentos/{name}-{tag_version}.bento" in objects
    assert f"staging/models/{model_name}-{model_version}.bentomodel" in objects
    for asset in CHAIN:
        assert f"staging/dagster/outputs/{asset}/{run_id}" in objects, asset
    assert any(name.startswith(f"staging/compute-logs/storage/{run_id}/") for name in objects)

    assert _files_outside_caches(staging.home) == []
    assert not (staging.home / "registry.db").exists() and not (staging.home / "artifacts").exists()


def test_the_bento_fetched_back_from_gcs_serves_predictions_and_logs_them_to_gcs(
    staging: Staging, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another machine of the environment: nothing local but what PostgreSQL and GCS hold.
    for cache in ("bentoml", "cache"):
        shutil.rmtree(staging.home / cache, ignore_errors=True)
    _mlops(staging, "models", "promote", "1", "--to", "production")
    with ModelRegistry(staging.env["MLOPS_REGISTRY_URL"], "staging") as models:
        production = models.production()
    name, _, version = production.bento_tag.partition(":")

    port = free_port()
    deployed = _mlops(staging, "deploy", "local", "--port", str(port))
    try:
        assert f"Serving {production.bento_tag} at http://127.0.0.1:{port}" in deployed.stdout
        assert (staging.home / "bentoml" / "bentos" / name / version / "bento.yaml").is_file()
        samples = {label: sorted((staging.dataset / label).glob("*.png"))[0] for label in ("dark", "grey", "light")}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            for index in range(REQUESTS):
                label, path = list(samples.items())[index % len(samples)]
                response = client.post("/predict", files={"images": (path.name, path.read_bytes(), "image/png")})
                assert response.status_code == 200, response.text
                body = response.json()
                assert (body["model_version"], body["predictions"][0]["label"]) == (production.model_tag, label)
        # Deploying again replaces the running server, and says so.
        again = _mlops(staging, "deploy", "local", "--port", str(port))
        assert (
            f"Stopped the local deployment it replaces: {production.bento_tag} at http://127.0.0.1:{port} (pid "
            in again.stdout
        )
    finally:
        _mlops(staging, "undeploy", "local")

    # The servers closed their log files when they stopped and uploaded them; none is left on the machine.
    for variable in ("MLOPS_HOME", "MLOPS_STORAGE_URL", "MLOPS_ENV"):
        monkeypatch.setenv(variable, staging.env[variable])
    with opened("prediction_logs", "staging") as logs:
        assert logs.where() == f"gs://{staging.store}/staging/predictions"
        logged = list(records(logs.store()))
    assert 1 <= len(logged) <= REQUESTS
    assert {(record["model_version"], record["endpoint"]) for record in logged} == {(production.model_tag, "/predict")}
    assert not list((staging.home / "cache" / "predictions").rglob("*.jsonl"))
    assert _files_outside_caches(staging.home) == []
