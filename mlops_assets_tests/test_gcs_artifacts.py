"""The artifact store and step outputs on GCS (the emulator): published whole with a marker written last, opened on
another machine through its cache, and never taken from an upload cut short or an object changed afterwards."""

import json
from pathlib import Path

import dagster as dg
import pytest
from dagster_gcp import GCSResource

from mlops_assets.lib.atomic import atomic_directory
from mlops_assets.lib.storage.gcs import MARKER, GcsError
from mlops_assets.resources.artifacts import ArtifactMissingError
from mlops_assets.resources.bento_store import BentoNotFoundError, GcsBentoStore
from mlops_assets.resources.fixed import fixed_io_manager
from mlops_assets.resources.gcs_artifacts import GcsArtifactStore
from mlops_assets.resources.gcs_io_manager import GcsRunOutputs
from mlops_assets_tests.gcs_emulator import GcsEmulator


def _store(url: str) -> GcsArtifactStore:
    return GcsArtifactStore(url=url, gcs=GCSResource(project="test"))


def _publish(store: GcsArtifactStore, kind: str, key: str, files: dict[str, bytes]) -> None:
    with store.publishing(kind, key) as destination, atomic_directory(destination) as staging:
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)


def _other_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str) -> Path:
    """Another MLOPS_HOME, so the store's cache starts empty, as on another machine."""
    home = tmp_path / name
    monkeypatch.setenv("MLOPS_HOME", str(home))
    return home


FILES = {"package.json": b'{"format": 1}', "model/weights.pt": b"\x00\x01" * 500}


def test_a_published_artifact_is_opened_on_another_machine_from_gcs(
    gcs_emulator: GcsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = gcs_emulator.new_bucket("store")
    store = _store(f"gs://{bucket}/env")
    writer_home = _other_machine(monkeypatch, tmp_path, "writer")
    _publish(store, "trained_model", "k1", FILES)

    objects = gcs_emulator.objects(bucket)
    assert set(objects) == {f"env/artifacts/trained_model/k1/{name}" for name in [*FILES, MARKER]}
    marker = json.loads(
        gcs_emulator.client().bucket(bucket).blob(f"env/artifacts/trained_model/k1/{MARKER}").download_as_bytes()
    )
    assert marker["files"] == {name: len(data) for name, data in FILES.items()}
    assert store.uri("trained_model", "k1") == f"gs://{bucket}/env/artifacts/trained_model/k1"
    # The writer's own copy is a cache under its home, nothing else.
    assert store.fetch("trained_model", "k1").is_relative_to(writer_home / "cache" / "artifacts")

    reader_home = _other_machine(monkeypatch, tmp_path, "reader")
    opened = store.open("trained_model", "k1")
    assert opened.is_relative_to(reader_home / "cache" / "artifacts")
    assert {
        path.relative_to(opened).as_posix(): path.read_bytes() for path in opened.rglob("*") if path.is_file()
    } == FILES


def test_an_upload_cut_short_is_never_taken_for_an_artifact(
    gcs_emulator: GcsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = gcs_emulator.new_bucket("store")
    store = _store(f"gs://{bucket}/env")
    _other_machine(monkeypatch, tmp_path, "reader")
    # The files made it, the marker did not: the writer died between them.
    blob = gcs_emulator.client().bucket(bucket).blob("env/artifacts/trained_model/k2/package.json")
    blob.upload_from_string(b"{}")

    assert store.fetch("trained_model", "k2") is None
    with pytest.raises(ArtifactMissingError) as missing:
        store.open("trained_model", "k2")
    assert str(missing.value) == (
        f"trained_model version k2 is not in the artifact store (gs://{bucket}/env/artifacts/trained_model/k2); "
        "rematerialize trained_model."
    )


def test_a_stale_cache_is_replaced_and_an_object_changed_after_publishing_is_refused(
    gcs_emulator: GcsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = gcs_emulator.new_bucket("store")
    store = _store(f"gs://{bucket}/env")
    _other_machine(monkeypatch, tmp_path, "writer")
    _publish(store, "validated_images", "k3", FILES)

    # A cached copy that differs from what the marker lists (a truncated file) is not used: downloaded again.
    cached = store.fetch("validated_images", "k3")
    (cached / "model" / "weights.pt").write_bytes(b"\x00")
    assert (store.open("validated_images", "k3") / "model" / "weights.pt").read_bytes() == FILES["model/weights.pt"]

    # An object replaced after publishing, with another size: refused by name, nothing half-downloaded kept.
    gcs_emulator.client().bucket(bucket).blob("env/artifacts/validated_images/k3/package.json").upload_from_string(
        b"{}"
    )
    reader_home = _other_machine(monkeypatch, tmp_path, "reader")
    with pytest.raises(GcsError) as changed:
        store.open("validated_images", "k3")
    assert str(changed.value) == (
        f"gs://{bucket}/env/artifacts/validated_images/k3/package.json holds 2 bytes, not the 13 its {MARKER} lists; "
        "it was changed after it was published. Rematerialize the asset that writes it."
    )
    assert not any(path.is_file() for path in (reader_home / "cache" / "artifacts").rglob("*"))


def test_the_store_names_a_bucket_that_does_not_exist(gcs_emulator: GcsEmulator) -> None:
    bucket = gcs_emulator.new_bucket("store")

    def problem(url: str) -> str:
        with _store(url).process_config_and_initialize_cm() as store:
            return store.problem()

    assert problem(f"gs://{bucket}/env") == ""
    assert problem("gs://no-such-store/env") == "bucket 'no-such-store' does not exist; create it or correct the URL"
    assert problem("s3://elsewhere/env") == "'s3://elsewhere/env' is not a gs://bucket/prefix URL"


@dg.asset
def number() -> int:
    """A value for the IO manager to keep."""
    return 41


@dg.asset
def next_number(number: int) -> int:
    """Reads `number` through the IO manager."""
    return number + 1


def test_step_outputs_are_kept_per_run_on_gcs_and_read_back(gcs_emulator: GcsEmulator) -> None:
    bucket = gcs_emulator.new_bucket("store")
    outputs = GcsRunOutputs(url=f"gs://{bucket}/env", gcs=GCSResource(project="test"))
    io_manager = fixed_io_manager(outputs, "Step outputs on GCS.")
    with dg.DagsterInstance.ephemeral() as instance:
        first = dg.materialize([number, next_number], resources={"io_manager": io_manager}, instance=instance)
        # A later run reads `number` from the run that produced it.
        second = dg.materialize(
            [number.to_source_asset(), next_number], resources={"io_manager": io_manager}, instance=instance
        )
    assert first.success and second.success
    assert second.output_for_node("next_number") == 42
    objects = gcs_emulator.objects(bucket)
    assert {
        f"env/dagster/outputs/number/{first.run_id}",
        f"env/dagster/outputs/next_number/{first.run_id}",
        f"env/dagster/outputs/next_number/{second.run_id}",
        "env/dagster/number",
        "env/dagster/next_number",
    } == set(objects)
    # What the UI shows of each value: its object as a URL.
    shown = {
        event.asset_key.to_user_string(): event.materialization.metadata["path"]
        for event in first.get_asset_materialization_events()
    }
    assert shown == {
        name: dg.MetadataValue.url(f"gs://{bucket}/env/dagster/outputs/{name}/{first.run_id}")
        for name in ("number", "next_number")
    }


def test_a_bento_kept_neither_here_nor_on_gcs_is_named_with_its_remedy(gcs_emulator: GcsEmulator) -> None:
    bucket = gcs_emulator.new_bucket("store")
    store = GcsBentoStore(url=f"gs://{bucket}/env", gcs=GCSResource(project="test"))
    with store.process_config_and_initialize_cm() as initialized, pytest.raises(BentoNotFoundError) as missing:
        initialized.ensure_bento("image-classifier-service:nowhere")
    assert str(missing.value) == (
        f"Bento image-classifier-service:nowhere is neither in the local BentoML store nor at gs://{bucket}/env/bentos/"
        "image-classifier-service-nowhere.bento; rematerialize the bento asset that built it."
    )
