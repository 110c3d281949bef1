"""Parallel decoding must give exactly what one process gives, and start one pool for both passes."""

from pathlib import Path

import numpy as np
import pytest

from mlops_assets.lib.data import validated_data
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets_tests.conftest import write_png

ARRAYS = ("images.npy", "labels.npy", "splits.npy")


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """60 images of mixed sizes and modes plus undecodable files, so every column crosses the process boundary."""
    root = tmp_path / "data"
    rng = np.random.default_rng(11)
    for index in range(60):
        label = ("a", "b", "c")[index % 3]
        if index % 10 == 0:
            write_png(root / label / f"{index}.png", rng.integers(0, 255, (7, 7, 3)), mode="RGB")
        else:
            write_png(root / label / f"{index} é.png", rng.integers(0, 255, (7 + index % 2, 7)))
    (root / "a" / "broken.png").write_bytes(b"not an image")
    (root / "b" / "empty.png").write_bytes(b"")
    return root


class _CountingPool(validated_data.ProcessPoolExecutor):
    started = 0

    def __init__(self, *args, **kwargs) -> None:
        type(self).started += 1
        super().__init__(*args, **kwargs)


def _assert_same_build(one: Path, other: Path) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(np.load(one / name), np.load(other / name))
    for name in ("stats.csv", "quarantine.csv", "baseline.json", "images.npy"):
        assert (one / name).read_bytes() == (other / name).read_bytes(), name


def test_parallel_decoding_equals_single_process(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(validated_data, "ProcessPoolExecutor", _CountingPool)
    monkeypatch.setattr(_CountingPool, "started", 0)
    manifest = scan_dataset(dataset)
    single = build_validated_dataset(manifest, GeometryConfig(), tmp_path / "single", workers=1)
    assert _CountingPool.started == 0
    parallel = build_validated_dataset(
        manifest, GeometryConfig(), tmp_path / "parallel", workers=2, parallel_threshold=10
    )
    # One pool, shared by the header pass and the decode pass.
    assert _CountingPool.started == 1
    assert parallel.num_invalid == single.num_invalid == 2
    assert parallel.num_decoded_now == single.num_decoded_now == 62
    assert parallel.spec == single.spec
    assert parallel.statistics().equals(single.statistics())
    _assert_same_build(tmp_path / "single", tmp_path / "parallel")


def test_parallel_incremental_build_decodes_only_new_files(dataset: Path, tmp_path: Path) -> None:
    first = build_validated_dataset(scan_dataset(dataset), GeometryConfig(), tmp_path / "v1", workers=1)
    for index in range(12):
        write_png(dataset / "c" / f"new-{index}.png", np.full((7, 7), 40 + index))
    manifest = scan_dataset(dataset)
    incremental = build_validated_dataset(
        manifest, GeometryConfig(), tmp_path / "v2", workers=2, parallel_threshold=4, previous=first
    )
    fresh = build_validated_dataset(manifest, GeometryConfig(), tmp_path / "v3", workers=1)
    # The 12 new files and the 2 undecodable ones (failures are always retried).
    assert incremental.num_decoded_now == 14
    assert incremental.statistics().equals(fresh.statistics())
    _assert_same_build(tmp_path / "v2", tmp_path / "v3")
