"""The dataset store on GCS (the emulator): objects under their SHA-256 in the environment's bucket, uploaded once,
laid out locally from a checked cache, and clear errors for what is missing or corrupt."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from dagster_gcp import GCSResource

from mlops_assets.lib.data.content_store import StoreError, file_digest
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.resources.dataset_store import GcsDatasetStore
from mlops_assets_tests.conftest import write_png
from mlops_assets_tests.gcs_emulator import GcsEmulator


def _dataset(root: Path, count: int = 4) -> Path:
    rng = np.random.default_rng(11)
    for label in ("a", "b"):
        for index in range(count):
            write_png(root / label / f"{index}.png", rng.integers(0, 255, (8, 8)))
    return root


@pytest.fixture
def store(gcs_emulator: GcsEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> GcsDatasetStore:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))  # the local cache of blobs
    bucket = gcs_emulator.new_bucket("datasets")
    return GcsDatasetStore(url=f"gs://{bucket}/env", gcs=GCSResource(project="test"))


def _objects(store: GcsDatasetStore) -> list[str]:
    client = store.gcs.get_client()
    bucket, _, prefix = store.url[len("gs://") :].partition("/")
    return sorted(blob.name for blob in client.list_blobs(bucket, prefix=prefix))


def test_files_are_uploaded_once_under_their_hash_with_the_manifest_last(
    store: GcsDatasetStore, tmp_path: Path
) -> None:
    root = _dataset(tmp_path / "data")
    first = scan_dataset(root)
    kept = store.keep(first, root)
    assert (kept.blobs_added, kept.bytes_added) == (8, sum(entry.size for entry in first.entries))
    digests = sorted({entry.sha256 for entry in first.entries})
    objects = _objects(store)
    assert [name for name in objects if "/blobs/" in name] == [f"env/datasets/blobs/{sha256}" for sha256 in digests]
    assert [name for name in objects if "/manifests/" in name and "/chunks/" not in name] == [
        f"env/datasets/manifests/{first.data_version}.json"
    ]
    assert len([name for name in objects if "/manifests/chunks/" in name]) == 1
    assert store.uri() == f"{store.url}/datasets"

    write_png(root / "b" / "new.png", np.full((8, 8), 5))
    second = scan_dataset(root)
    added = store.keep(second, root)
    assert (added.blobs_added, added.bytes_added) == (1, (root / "b" / "new.png").stat().st_size)
    assert store.manifest(second.data_version) == second


def test_a_version_is_laid_out_from_the_bucket_on_a_machine_that_never_saw_it(
    store: GcsDatasetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dataset(tmp_path / "data")
    manifest = scan_dataset(root)
    store.keep(manifest, root)
    for path in root.rglob("*.png"):
        path.unlink()  # the source is gone
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "another-machine"))
    folder = store.local_root(store.manifest(manifest.data_version), verify=True)
    assert folder.is_relative_to(tmp_path / "another-machine")
    assert scan_dataset(folder).data_version == manifest.data_version


def test_a_blob_missing_from_the_bucket_is_named(
    store: GcsDatasetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dataset(tmp_path / "data")
    manifest = scan_dataset(root)
    store.keep(manifest, root)
    gone = next(entry for entry in manifest.entries if entry.path == "a/2.png")
    client = store.gcs.get_client()
    bucket = store.url[len("gs://") :].split("/")[0]
    client.bucket(bucket).blob(f"env/datasets/blobs/{gone.sha256}").delete()
    assert store.missing(manifest) == [gone]
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "another-machine"))  # a cache without the file
    with pytest.raises(StoreError) as refused:
        store.local_root(manifest)
    assert str(refused.value).startswith(
        f"Data version {manifest.data_version[:16]} cannot be laid out: 1 of its 8 files are missing from the "
        f"dataset store ({store.url}/datasets/blobs), e.g. a/2.png (SHA-256 {gone.sha256[:12]})."
    )


def test_a_corrupt_object_is_refused_when_downloaded(
    store: GcsDatasetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dataset(tmp_path / "data")
    manifest = scan_dataset(root)
    store.keep(manifest, root)
    victim = next(entry for entry in manifest.entries if entry.path == "b/1.png")
    client = store.gcs.get_client()
    bucket = store.url[len("gs://") :].split("/")[0]
    client.bucket(bucket).blob(f"env/datasets/blobs/{victim.sha256}").upload_from_string(b"x" * victim.size)
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "another-machine"))
    with pytest.raises(StoreError) as refused:
        store.local_root(manifest)
    corrupt = hashlib.sha256(b"x" * victim.size).hexdigest()
    assert str(refused.value) == (
        f"Blob {victim.sha256} of the dataset store is corrupt: its content hashes to {corrupt[:12]}. Delete it from "
        "the store and record the version again from a source that holds the file."
    )


def test_collection_deletes_the_objects_no_kept_version_names(store: GcsDatasetStore, tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data", count=2)
    first = scan_dataset(root)
    store.keep(first, root)
    (root / "a" / "0.png").unlink()
    second = scan_dataset(root)
    store.keep(second, root)
    dropped = next(entry for entry in first.entries if entry.path == "a/0.png")

    collected = store.collect({second.data_version})
    assert (collected.blobs_removed, collected.bytes_removed, collected.blobs_kept) == (1, dropped.size, 3)
    assert f"env/datasets/blobs/{dropped.sha256}" not in _objects(store)
    assert store.missing(second) == []
    assert file_digest(store.local_root(second) / "b" / "1.png") == next(
        entry.sha256 for entry in second.entries if entry.path == "b/1.png"
    )
