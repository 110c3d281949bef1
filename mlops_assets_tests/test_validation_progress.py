"""Decoding and validating a dataset tells its progress, one line at a time, as the run's log shows it."""

from pathlib import Path

import numpy as np

from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
from mlops_assets_tests.conftest import write_png


def test_parallel_passes_report_files_done_and_each_phase_is_named(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for index in range(40):
        write_png(tmp_path / "data" / ("a", "b")[index % 2] / f"{index}.png", rng.integers(0, 255, (6, 6)))
    messages: list[str] = []
    build_validated_dataset(
        scan_dataset(tmp_path / "data"),
        GeometryConfig(),
        tmp_path / "validated",
        workers=2,
        parallel_threshold=10,
        progress=messages.append,
    )
    # 40 files in 8 chunks of 5 (4 per worker): every chunk is at least a tenth of the files.
    steps = [f"{done} of 40 files ({done / 40:.0%})" for done in range(5, 41, 5)]
    assert messages == [
        *(f"reading image headers: {step}" for step in steps),
        "0 images reused by content hash, 40 to decode",
        *(f"decoding images: {step}" for step in steps),
        "Running the per-file expectations of profile 'default' on 40 images",
        "Running the dataset expectations",
        "Building the Data Docs",
    ]
