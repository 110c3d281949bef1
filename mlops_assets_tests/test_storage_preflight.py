"""Before a run: a dataset or store location on GCS that cannot be used is refused in one line naming the setting to
fix, before any run or asset exists (GCS emulator; a bucket without permission cannot be shown there: it has no IAM)."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml

from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets.storage_checks import check_storage
from mlops_assets_tests import image_inputs as inputs
from mlops_assets_tests.gcs_emulator import GcsEmulator
from mlops_assets_tests.postgres_server import PostgresServer

MLOPS = str(Path(sys.executable).parent / "mlops")
STAGING = "staging storage (deployments/staging.yaml)"


@pytest.fixture(scope="module")
def buckets(gcs_emulator: GcsEmulator, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A store bucket and a dataset at gs://<data bucket>/set."""
    folder = tmp_path_factory.mktemp("dataset")
    inputs.write(folder / "a" / "0.png", inputs.encode(inputs.Image.fromarray(inputs.noise(0, (8, 8))), "PNG"))
    data = gcs_emulator.new_bucket("data")
    gcs_emulator.upload_folder(folder, data, "set")
    return gcs_emulator.new_bucket("store"), data


def _refusal(run_config: dict | None = None, environment: str = "staging") -> str:
    with pytest.raises(ConfigError) as refused:
        check_storage(run_config, environment)
    return str(refused.value)


def test_a_usable_dataset_and_store_pass(buckets: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    store, data = buckets
    monkeypatch.setenv("MLOPS_STORAGE_URL", f"gs://{store}/staging")
    monkeypatch.setenv("MLOPS_DATASET", f"gs://{data}/set")
    check_storage(None, "staging")
    check_storage(None, "production")


def test_each_unusable_location_is_named_by_the_setting_to_fix(
    buckets: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, data = buckets
    monkeypatch.delenv("MLOPS_STORAGE_URL", raising=False)
    monkeypatch.setenv("MLOPS_DATASET", f"gs://{data}/set")
    assert _refusal() == (
        f"{STAGING}: MLOPS_STORAGE_URL: not set; this environment keeps artifacts, step outputs and bentos on GCS "
        "(storage.backend = 'gcs'): set it to gs://bucket/prefix"
    )

    monkeypatch.setenv("MLOPS_STORAGE_URL", "gs://no-such-store/staging")
    assert _refusal() == (
        f"{STAGING}: MLOPS_STORAGE_URL = 'gs://no-such-store/staging': bucket 'no-such-store' does not exist; "
        "create it or correct the URL"
    )

    monkeypatch.setenv("MLOPS_STORAGE_URL", f"gs://{store}/staging")
    monkeypatch.setenv("MLOPS_DATASET", "gs://no-such-data/set")
    assert _refusal() == (
        f"{STAGING}: MLOPS_DATASET = 'gs://no-such-data/set': bucket 'no-such-data' does not exist; create it or "
        "correct the URL"
    )
    monkeypatch.setenv("MLOPS_DATASET", f"gs://{data}/no-such-prefix")
    assert _refusal() == (
        f"{STAGING}: MLOPS_DATASET = 'gs://{data}/no-such-prefix': no object under gs://{data}/no-such-prefix; "
        "upload the files there or correct the URL"
    )
    monkeypatch.setenv("MLOPS_DATASET", "/data/set")
    assert _refusal() == f"{STAGING}: MLOPS_DATASET = '/data/set': '/data/set' is not a gs://bucket/prefix URL"
    monkeypatch.delenv("MLOPS_DATASET")
    assert _refusal() == (
        f"{STAGING}: MLOPS_DATASET: not set; this environment reads datasets from GCS: set it to gs://bucket/prefix"
    )
    # The dataset chosen in the run config is named as such.
    moved = {"resources": {"dataset": {"config": {"root": "gs://no-such-data/set"}}}}
    assert _refusal(moved) == (
        "run config: resources.dataset.config.root = 'gs://no-such-data/set': bucket 'no-such-data' does not exist; "
        "create it or correct the URL"
    )


def test_a_gcs_dataset_in_an_environment_that_reads_folders_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_DATASET", "gs://data/set")
    assert _refusal(environment="local") == (
        "local storage (deployments/local.yaml): MLOPS_DATASET = 'gs://data/set': a URL, but this environment "
        "reads datasets from folders; choose an environment whose storage reads it (MLOPS_ENV=staging or "
        "production for gs://) or pass a folder"
    )


def test_the_real_command_refuses_a_missing_dataset_bucket_in_one_line_before_any_run(
    buckets: tuple[str, str], gcs_emulator: GcsEmulator, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    store, _ = buckets
    dagster_url = postgres_server.new_database("preflight").replace("postgresql://", "postgresql+psycopg2://")
    home = tmp_path / "home"
    env = {
        **os.environ,
        "MLOPS_HOME": str(home),
        "MLOPS_ENV": "staging",
        "MLOPS_STORAGE_URL": f"gs://{store}/preflight",
        "MLOPS_REGISTRY_URL": postgres_server.new_database("preflight_registry"),
        "MLOPS_DAGSTER_POSTGRES_URL": dagster_url,
    }
    missing = "'gs://no-such-data/set': bucket 'no-such-data' does not exist; create it or correct the URL"

    # The operator's dataset variable, then the command line's choice (carried in raw_images' run config).
    by_variable = subprocess.run(
        [MLOPS, "run"], env={**env, "MLOPS_DATASET": "gs://no-such-data/set"}, capture_output=True, text=True
    )
    assert by_variable.returncode == 2, by_variable.stdout + by_variable.stderr
    assert by_variable.stderr == f"error: {STAGING}: MLOPS_DATASET = {missing}\n"
    assert by_variable.stdout == ""
    by_argument = subprocess.run(
        [MLOPS, "run", "--dataset", "gs://no-such-data/set"], env=env, capture_output=True, text=True, timeout=300
    )
    assert by_argument.returncode == 2, by_argument.stdout + by_argument.stderr
    assert by_argument.stderr.startswith("error: run config: ") and by_argument.stderr.endswith(f" = {missing}\n")
    assert by_argument.stderr.count("\n") == 1 and by_argument.stdout == ""

    # No run exists and nothing was stored.
    instance_home = home / "dagster-staging"
    assert yaml.safe_load((instance_home / "dagster.yaml").read_text())["storage"]["postgres"]
    os.environ["MLOPS_DAGSTER_POSTGRES_URL"] = dagster_url
    try:
        with dg.DagsterInstance.from_config(str(instance_home)) as instance:
            assert instance.get_run_records() == []
    finally:
        del os.environ["MLOPS_DAGSTER_POSTGRES_URL"]
    assert gcs_emulator.objects(store, "preflight/") == {}
