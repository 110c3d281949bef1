import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.errors import DatasetError
from mlops_assets_tests.conftest import write_png


@pytest.fixture
def small_dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        for index in range(3):
            write_png(tmp_path / "data" / label / f"{index}.png", rng.integers(0, 255, (6, 6)))
    return tmp_path / "data"


def test_manifest_lists_every_image_with_label_size_and_hash(small_dataset: Path) -> None:
    manifest = scan_dataset(small_dataset)
    assert len(manifest.entries) == 6
    assert manifest.labels == ("cat", "dog")
    first = manifest.entries[0]
    assert first.path == "cat/0.png"
    assert first.size == (small_dataset / "cat" / "0.png").stat().st_size
    assert first.sha256 == hashlib.sha256((small_dataset / "cat" / "0.png").read_bytes()).hexdigest()


def test_touching_a_file_keeps_the_data_version(small_dataset: Path) -> None:
    before = scan_dataset(small_dataset).data_version
    target = small_dataset / "cat" / "0.png"
    later = time.time() + 100
    os.utime(target, (later, later))
    assert scan_dataset(small_dataset).data_version == before


def test_adding_removing_or_changing_a_file_changes_the_data_version(small_dataset: Path) -> None:
    original = scan_dataset(small_dataset).data_version
    write_png(small_dataset / "dog" / "new.png", np.full((6, 6), 7))
    added = scan_dataset(small_dataset).data_version
    assert added != original
    (small_dataset / "dog" / "new.png").unlink()
    assert scan_dataset(small_dataset).data_version == original
    write_png(small_dataset / "cat" / "0.png", np.full((6, 6), 9))
    assert scan_dataset(small_dataset).data_version != original


def test_relabelling_a_file_changes_the_data_version(small_dataset: Path) -> None:
    original = scan_dataset(small_dataset).data_version
    shutil.move(small_dataset / "cat" / "0.png", small_dataset / "dog" / "0-moved.png")
    assert scan_dataset(small_dataset).data_version != original


def test_copying_the_dataset_elsewhere_keeps_the_data_version(small_dataset: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(small_dataset, tmp_path / "elsewhere")
    assert scan_dataset(copy).data_version == scan_dataset(small_dataset).data_version


def test_files_without_a_label_folder_or_image_suffix_are_reported_not_read(small_dataset: Path) -> None:
    (small_dataset / "stray.png").write_bytes(b"not in a label folder")
    (small_dataset / "cat" / "notes.txt").write_text("hello")
    manifest = scan_dataset(small_dataset)
    assert len(manifest.entries) == 6
    reasons = {skipped.path: skipped.reason for skipped in manifest.skipped}
    assert "no label folder" in reasons["stray.png"]
    assert "not an image type" in reasons["cat/notes.txt"]


def test_missing_or_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        scan_dataset(tmp_path / "missing")
    (tmp_path / "empty" / "label").mkdir(parents=True)
    with pytest.raises(DatasetError, match="No images found"):
        scan_dataset(tmp_path / "empty")
