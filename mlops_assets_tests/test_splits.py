import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.splits import assign_split
from mlops_assets_tests.conftest import write_png


def _digest_in_bucket(bucket: int) -> str:
    """A SHA-256 hex digest whose first 48 bits fall in `bucket` of the 10,000 split buckets."""
    return f"{bucket:012x}" + "f" * 52


@pytest.mark.parametrize(
    ("bucket", "split"),
    [(0, "train"), (6_999, "train"), (7_000, "val"), (8_499, "val"), (8_500, "test"), (9_999, "test")],
)
def test_split_is_decided_by_the_content_hash_bucket_at_the_70_15_15_boundaries(bucket: int, split: str) -> None:
    assert assign_split(_digest_in_bucket(bucket)) == split
    # Only the bucket matters: 10,000 buckets further along the hash space is the same bucket.
    assert assign_split(_digest_in_bucket(bucket + 10_000)) == split


def test_split_fractions_are_roughly_70_15_15() -> None:
    counts = Counter(assign_split(hashlib.sha256(str(i).encode()).hexdigest()) for i in range(20_000))
    assert abs(counts["train"] / 20_000 - 0.70) < 0.02
    assert abs(counts["val"] / 20_000 - 0.15) < 0.02
    assert abs(counts["test"] / 20_000 - 0.15) < 0.02


def test_adding_files_never_moves_existing_files_between_splits(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for index in range(60):
        write_png(tmp_path / "a" / f"{index}.png", rng.integers(0, 255, (5, 5)))
    before = {entry.path: entry.split for entry in scan_dataset(tmp_path).entries}
    for index in range(60, 120):
        write_png(tmp_path / "a" / f"{index}.png", rng.integers(0, 255, (5, 5)))
    after = {entry.path: entry.split for entry in scan_dataset(tmp_path).entries}
    assert {path: after[path] for path in before} == before
    assert len(after) == 120


def test_identical_bytes_land_in_the_same_split_so_duplicates_cannot_leak(tmp_path: Path) -> None:
    pixels = np.arange(25).reshape(5, 5)
    write_png(tmp_path / "a" / "one.png", pixels)
    write_png(tmp_path / "b" / "copy.png", pixels)
    expected = assign_split(hashlib.sha256((tmp_path / "a" / "one.png").read_bytes()).hexdigest())
    assert {entry.path: entry.split for entry in scan_dataset(tmp_path).entries} == {
        "a/one.png": expected,
        "b/copy.png": expected,
    }
