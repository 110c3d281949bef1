from pathlib import Path

import numpy as np

from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets_tests.conftest import write_png


def test_incremental_build_equals_a_fresh_build_and_decodes_only_new_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    for label in ("a", "b"):
        for index in range(12):
            write_png(tmp_path / "data" / label / f"{index}.png", rng.integers(0, 255, (9, 9)))
    (tmp_path / "data" / "a" / "broken.png").write_bytes(b"not an image")
    first = build_validated_dataset(scan_dataset(tmp_path / "data"), GeometryConfig(), tmp_path / "v1")
    assert first.num_decoded_now == 25

    write_png(tmp_path / "data" / "b" / "added.png", rng.integers(0, 255, (9, 9)))
    manifest = scan_dataset(tmp_path / "data")
    incremental = build_validated_dataset(manifest, GeometryConfig(), tmp_path / "v2", previous=first)
    fresh = build_validated_dataset(manifest, GeometryConfig(), tmp_path / "v3")
    # The new file and the broken one (failures are always retried) are decoded; the rest are reused.
    assert incremental.num_decoded_now == 2
    for name in ("images.npy", "labels.npy", "splits.npy"):
        np.testing.assert_array_equal(np.load(tmp_path / "v2" / name), np.load(tmp_path / "v3" / name))
    assert incremental.statistics().equals(fresh.statistics())
    assert incremental.spec == fresh.spec


def test_a_different_geometry_decodes_everything_again(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    for label in ("a", "b"):
        for index in range(6):
            write_png(tmp_path / "data" / label / f"{index}.png", rng.integers(0, 255, (9, 9)))
    manifest = scan_dataset(tmp_path / "data")
    first = build_validated_dataset(manifest, GeometryConfig(), tmp_path / "v1")
    resized = build_validated_dataset(manifest, GeometryConfig(height=4, width=4), tmp_path / "v2", previous=first)
    assert resized.num_decoded_now == 12
    assert resized.image_spec.height == 4
