"""One environment switch (MLOPS_ENV): each deployments/<env>.yaml picks the implementation of every external system,
the Definitions load and their resources start under every environment with its variables set, URLs come only from
the environment, and the production instance keeps compute logs on GCS through dagster-gcp."""

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_gcp.gcs.compute_log_manager import GCSComputeLogManager

from mlops_assets import settings
from mlops_assets.definitions import build_definitions
from mlops_assets.defs.jobs import PIPELINE_JOB_NAME
from mlops_assets.environments import KNOWN_ENVIRONMENTS, get_environment, resources_for, storage_resources
from mlops_assets.instance_config import COMPUTE_LOG_UPLOAD_INTERVAL_S, compute_logs_section
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.bento_store import GcsBentoStore, LocalBentoStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.gcs_artifacts import GcsArtifactStore
from mlops_assets.resources.gcs_dataset import GcsDatasetSource
from mlops_assets.resources.gcs_io_manager import GcsRunOutputs, GcsRunOutputsIOManager
from mlops_assets.resources.prediction_logs import GcsPredictionLogs, LocalPredictionLogs
from mlops_assets.resources.run_outputs import RunOutputsIOManager
from mlops_assets_tests.gcs_emulator import GcsEmulator
from mlops_assets_tests.postgres_server import PostgresServer

# What staging and production read from the environment, at test values.
CLOUD_VARIABLES = {
    "MLOPS_STORAGE_URL": "gs://mlops-test-store/env",
    "MLOPS_DATASET": "gs://mlops-test-data/digits",
    "MLOPS_REGISTRY_URL": "postgresql+psycopg2://mlops:secret@db.test:5432/registry",
    "MLOPS_DAGSTER_POSTGRES_URL": "postgresql+psycopg2://mlops:secret@db.test:5432/dagster",
    "MLOPS_GCP_PROJECT": "mlops-test-project",
}
LOCAL_IMPLEMENTATIONS = {
    "dataset": FolderDatasetSource,
    "artifacts": LocalArtifactStore,
    "bento_store": LocalBentoStore,
    "prediction_logs": LocalPredictionLogs,
}
CLOUD_IMPLEMENTATIONS = {
    "dataset": GcsDatasetSource,
    "artifacts": GcsArtifactStore,
    "bento_store": GcsBentoStore,
    "prediction_logs": GcsPredictionLogs,
    "io_manager": GcsRunOutputs,
}


@pytest.fixture
def cloud_variables(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in CLOUD_VARIABLES.items():
        monkeypatch.setenv(name, value)
    return CLOUD_VARIABLES


def test_mlops_env_selects_the_environment_and_an_unknown_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLOPS_ENV", raising=False)
    assert get_environment() == "local"
    monkeypatch.setenv("MLOPS_ENV", "staging")
    assert get_environment() == "staging"
    monkeypatch.setenv("MLOPS_ENV", "prod")
    with pytest.raises(ConfigError) as unknown:
        get_environment()
    assert str(unknown.value) == (
        "environment: MLOPS_ENV = 'prod': expected one of 'local', 'staging', 'production' (deployments/)"
    )


@pytest.mark.parametrize("environment", KNOWN_ENVIRONMENTS)
def test_each_environment_file_picks_one_implementation_per_external_system(
    environment: str, cloud_variables: dict[str, str]
) -> None:
    found = storage_resources(environment)
    expected = LOCAL_IMPLEMENTATIONS if environment == "local" else CLOUD_IMPLEMENTATIONS
    assert {name: type(found[name]) for name in expected} == expected
    if environment == "local":
        assert "io_manager" not in found  # Dagster's instance storage, kept per run (run_outputs.py)
        assert found["registry"].url == ""  # MLOPS_REGISTRY_URL when set, else MLOPS_HOME/registry.db
    # URLs and secrets are never written in an environment file: only the names of the variables holding them.
    text = settings.environment_file(environment).read_text()
    for value in CLOUD_VARIABLES.values():
        assert value not in text
    assert "://" not in yaml.safe_dump(yaml.safe_load(text))  # no setting holds a URL


@pytest.mark.parametrize("environment", KNOWN_ENVIRONMENTS)
def test_the_definitions_load_and_their_resources_start_under_every_environment(
    environment: str,
    cloud_variables: dict[str, str],
    gcs_emulator: GcsEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOPS_ENV", environment)
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    defs = build_definitions()
    dg.Definitions.validate_loadable(defs)
    job = defs.resolve_job_def(PIPELINE_JOB_NAME)
    assert set(job.resource_defs) >= {"dataset", "artifacts", "bento_store", "registry", "prediction_logs"}
    if environment == "local":
        # Locally both are optional: unset, the bundled sample and MLOPS_HOME/registry.db.
        monkeypatch.delenv("MLOPS_DATASET")
        monkeypatch.delenv("MLOPS_REGISTRY_URL")
    # What a run gets: every resource set up from the environment variables, the GCS clients with the emulator's
    # anonymous credentials (dagster-gcp's IO manager checks that its bucket exists; the databases are not reached).
    client = gcs_emulator.client()
    if not client.bucket("mlops-test-store").exists():
        client.create_bucket("mlops-test-store")
    with dg.DagsterInstance.ephemeral() as instance, dg.build_resources(resources_for(environment), instance) as found:
        if environment == "local":
            assert found.artifacts.uri("trained_model", "k") == str(tmp_path / "artifacts" / "trained_model" / "k")
            assert found.prediction_logs.where() == str(tmp_path / "predictions")
            assert isinstance(found.io_manager, RunOutputsIOManager)
            assert (found.registry.url, settings.registry_url()) == ("", f"sqlite:///{tmp_path / 'registry.db'}")
        else:
            assert found.dataset.root == CLOUD_VARIABLES["MLOPS_DATASET"]
            assert found.artifacts.uri("trained_model", "k") == "gs://mlops-test-store/env/artifacts/trained_model/k"
            assert found.bento_store.location("bentos", "svc:v1").prefix == "env/bentos/svc-v1.bento"
            assert found.prediction_logs.where() == "gs://mlops-test-store/env/predictions"
            assert isinstance(found.io_manager, GcsRunOutputsIOManager)
            assert (found.io_manager.bucket, found.io_manager.prefix) == ("mlops-test-store", "env/dagster")
            assert found.registry.url == CLOUD_VARIABLES["MLOPS_REGISTRY_URL"]


def test_run_config_cannot_move_the_prediction_logs(cloud_variables: dict[str, str]) -> None:
    job = build_definitions("staging").resolve_job_def(PIPELINE_JOB_NAME)
    moved = {"resources": {"prediction_logs": {"config": {"url": "gs://elsewhere/x"}}}}
    with pytest.raises(dg.DagsterInvalidConfigError) as refused:
        dg.validate_run_config(job, moved)
    assert 'Received unexpected config entry "url" at path root:resources:prediction_logs:config' in str(refused.value)


def test_production_keeps_compute_logs_on_gcs_through_dagster_gcp(
    gcs_emulator: GcsEmulator,
    postgres_server: PostgresServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bucket = gcs_emulator.new_bucket("store")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.setenv("MLOPS_STORAGE_URL", f"gs://{bucket}/production")
    monkeypatch.setenv(
        "MLOPS_DAGSTER_POSTGRES_URL",
        postgres_server.new_database("compute_logs").replace("postgresql://", "postgresql+psycopg2://"),
    )
    assert compute_logs_section(settings.environment_settings("local")) == {}
    path = settings.write_instance_config("production")
    assert yaml.safe_load(path.read_text())["compute_logs"] == {
        "module": "dagster_gcp.gcs.compute_log_manager",
        "class": "GCSComputeLogManager",
        "config": {
            "bucket": bucket,
            "prefix": "production/compute-logs",
            "local_dir": str(tmp_path / "cache" / "compute-logs"),
            "upload_interval": COMPUTE_LOG_UPLOAD_INTERVAL_S,
        },
    }

    @dg.asset
    def talkative() -> int:
        """Prints a line for the compute log."""
        print("hello from the step")
        return 1

    with dg.DagsterInstance.from_config(str(path.parent)) as instance:
        assert isinstance(instance.compute_log_manager, GCSComputeLogManager)
        result = dg.materialize([talkative], instance=instance, resources={"io_manager": dg.mem_io_manager})
        assert result.success
    logs = {name: size for name, size in gcs_emulator.objects(bucket, "production/compute-logs/").items()}
    stdout = [name for name in logs if name.startswith(f"production/compute-logs/storage/{result.run_id}/")]
    assert any(name.endswith(".out") for name in stdout), logs
    out = next(name for name in stdout if name.endswith(".out"))
    assert b"hello from the step" in gcs_emulator.client().bucket(bucket).blob(out).download_as_bytes()


def test_a_gcs_environment_without_its_storage_url_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLOPS_STORAGE_URL", raising=False)
    with pytest.raises(ConfigError) as unset:
        compute_logs_section(settings.environment_settings("production"))
    assert str(unset.value) == (
        "deployments/production.yaml storage: MLOPS_STORAGE_URL: not set; set it to gs://bucket/prefix "
        "(storage.backend = 'gcs')"
    )
    monkeypatch.setenv("MLOPS_STORAGE_URL", "gs://x")
    with pytest.raises(ConfigError) as malformed:
        compute_logs_section(settings.environment_settings("staging"))
    assert str(malformed.value).startswith(
        "deployments/staging.yaml storage: MLOPS_STORAGE_URL = 'gs://x': 'gs://x' does not start with a bucket name"
    )
