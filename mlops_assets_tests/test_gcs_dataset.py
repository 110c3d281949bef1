"""Datasets on GCS (the emulator): the same manifest and data version as the same files in a folder, objects hashed
once per generation, a local mirror that refuses changed or vanished objects, and clear errors for a bad location."""

from pathlib import Path

import pytest
from dagster_gcp import GCSResource
from PIL import Image

from mlops_assets.lib.data.gcs_dataset import GcsDataset
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.errors import DatasetError
from mlops_assets.lib.storage.gcs import parse_gcs_url
from mlops_assets.resources.gcs_dataset import GcsDatasetSource
from mlops_assets_tests import image_inputs as inputs
from mlops_assets_tests.gcs_emulator import GcsEmulator


def _png(seed: int) -> bytes:
    return inputs.encode(Image.fromarray(inputs.noise(seed, (8, 8))), "PNG")


def _tricky_folder(root: Path) -> Path:
    """Labels with images, nested folders, side files, hidden and system folders, an image without a suffix, a file
    without a label folder and an empty label folder: every rule of dataset_files has something to decide."""
    for label, offset in (("bright", 0), ("dark", 10)):
        for index in range(3):
            inputs.write(root / label / f"{index}.png", _png(offset + index))
    inputs.write(root / "dark" / "nested" / "deep" / "7.png", _png(7))
    inputs.write(root / "dark" / "scan_0001", _png(8))  # no suffix: recognised by its content
    inputs.write(root / "dark" / "frame.dat", b"\x01\x02")  # unknown suffix, not an image
    for name in ("Thumbs.db", ".DS_Store", "._0.png", "0.xmp", "notes.txt"):
        inputs.write(root / "bright" / name, _png(20))
    inputs.write(root / ".hidden" / "0.png", _png(21))
    inputs.write(root / "__MACOSX" / "0.png", _png(22))
    inputs.write(root / "bright" / ".thumbnails" / "0.png", _png(23))
    inputs.write(root / "loose.png", _png(24))
    (root / "empty").mkdir()
    return root


def _gcs_dataset(emulator: GcsEmulator, url: str, cache: Path) -> GcsDataset:
    return GcsDataset(emulator.client(), parse_gcs_url(url), cache)


def test_a_dataset_on_gcs_gives_the_manifest_and_data_version_of_the_same_files_in_a_folder(
    gcs_emulator: GcsEmulator, tmp_path: Path
) -> None:
    folder = _tricky_folder(tmp_path / "data")
    url = gcs_emulator.upload_folder(folder, gcs_emulator.new_bucket("data"), "sets/tricky")
    expected = scan_dataset(folder)
    found = _gcs_dataset(gcs_emulator, url, tmp_path / "cache").scan()

    assert found.root == url
    assert found.data_version == expected.data_version
    assert found.entries == expected.entries
    assert found.skipped == expected.skipped
    assert (found.label_folders, found.empty_labels) == (expected.label_folders, ("empty",))
    assert [entry.path for entry in found.entries] == [
        "bright/0.png",
        "bright/1.png",
        "bright/2.png",
        "dark/0.png",
        "dark/1.png",
        "dark/2.png",
        "dark/scan_0001",
        "dark/nested/deep/7.png",
    ]


def test_unchanged_objects_are_not_read_again_and_a_replaced_one_is(gcs_emulator: GcsEmulator, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    for label in ("a", "b"):
        for index in range(3):
            inputs.write(folder / label / f"{index}.png", _png(index + (10 if label == "b" else 0)))
    bucket = gcs_emulator.new_bucket("data")
    url = gcs_emulator.upload_folder(folder, bucket, "set")
    cache = tmp_path / "cache"

    first = _gcs_dataset(gcs_emulator, url, cache)
    before = first.scan()
    assert first.downloaded == 6
    again = _gcs_dataset(gcs_emulator, url, cache)  # a new process: the hash cache is on disk
    assert again.scan().data_version == before.data_version
    assert again.downloaded == 0

    # New content under the same name: a new generation, read again; the folder with the same change agrees.
    inputs.write(folder / "a" / "1.png", _png(99))
    gcs_emulator.client().bucket(bucket).blob("set/a/1.png").upload_from_filename(str(folder / "a" / "1.png"))
    changed = _gcs_dataset(gcs_emulator, url, cache)
    after = changed.scan()
    assert changed.downloaded == 1
    assert after.data_version != before.data_version
    assert after.data_version == scan_dataset(folder).data_version


def test_the_local_mirror_holds_the_listed_content_and_refuses_changed_or_vanished_objects(
    gcs_emulator: GcsEmulator, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    for label in ("a", "b"):
        for index in range(2):
            inputs.write(folder / label / f"{index}.png", _png(index + (10 if label == "b" else 0)))
    bucket = gcs_emulator.new_bucket("data")
    url = gcs_emulator.upload_folder(folder, bucket, "set")
    manifest = _gcs_dataset(gcs_emulator, url, tmp_path / "cache").scan()

    # Another machine (an empty cache) downloads what the manifest lists.
    mirror = _gcs_dataset(gcs_emulator, url, tmp_path / "other-cache").local_root(manifest)
    for entry in manifest.entries:
        assert (mirror / entry.path).read_bytes() == (folder / entry.path).read_bytes()

    blob = gcs_emulator.client().bucket(bucket).blob("set/b/0.png")
    blob.upload_from_string(_png(50))
    with pytest.raises(DatasetError) as changed:
        _gcs_dataset(gcs_emulator, url, tmp_path / "third-cache").local_root(manifest)
    assert str(changed.value).startswith(f"{url}/b/0.png changed since raw_images listed it (SHA-256 ")
    assert str(changed.value).endswith("; rematerialize raw_images.")

    blob.delete()
    with pytest.raises(DatasetError) as gone:
        _gcs_dataset(gcs_emulator, url, tmp_path / "fourth-cache").local_root(manifest)
    assert str(gone.value) == (
        f"1 file(s) of the dataset are gone from {url} since raw_images listed them, e.g. {url}/b/0.png; "
        "rematerialize raw_images."
    )


def test_the_dataset_source_names_what_is_wrong_with_its_location(gcs_emulator: GcsEmulator, tmp_path: Path) -> None:
    bucket = gcs_emulator.new_bucket("data")
    inputs.write(tmp_path / "data" / "a" / "0.png", _png(0))
    gcs_emulator.upload_folder(tmp_path / "data", bucket, "present")

    def problem(root: str) -> str:
        source = GcsDatasetSource(root=root, gcs=GCSResource(project="test"))
        with source.process_config_and_initialize_cm() as initialized:
            return initialized.problem()

    assert problem(f"gs://{bucket}/present") == ""
    assert problem("gs://no-such-bucket/set") == "bucket 'no-such-bucket' does not exist; create it or correct the URL"
    assert problem(f"gs://{bucket}/absent") == (
        f"no object under gs://{bucket}/absent; upload the files there or correct the URL"
    )
    assert problem("") == "not set; this environment reads datasets from GCS: set it to gs://bucket/prefix"
    assert problem("/data/set") == "'/data/set' is not a gs://bucket/prefix URL"
    assert problem("gs://Bad_Bucket/set").startswith("'gs://Bad_Bucket/set' does not start with a bucket name")
