import hashlib
from collections import Counter
from pathlib import Path

import numpy as np

from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.splits import assign_split
from mlops_assets_tests.conftest import write_png


def test_split_depends_only_on_content() -> None:
    digest = hashlib.sha256(b"some image bytes").hexdigest()
    assert assign_split(digest) == assign_split(digest)


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
    splits = {entry.split for entry in scan_dataset(tmp_path).entries}
    assert len(splits) == 1
