"""Validation throughput: decode + statistics + Great Expectations, parallel decoding vs one process, same run.

    .venv/bin/python benchmarks/bench_validation.py [--images 50000] [--repeats 3]

Generates a dataset of small greyscale PNGs (10 classes) in a temporary folder, then alternates
`build_validated_dataset(workers=1)` (the single-process baseline) and `build_validated_dataset(workers=None)`
(one decoding process per core) and reports the medians, and times the expectations alone on the resulting
statistics table. The load average is recorded before and after, since other work on the machine skews both.
Writes benchmarks/results/validation.json and validation.md.
"""

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

from mlops_assets.lib.data.data_validation import GxSession, quarantine_reasons, run_dataset_suites
from mlops_assets.lib.data.expectation_profiles import ExpectationProfile
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.data.validated_data import GeometryConfig, ValidatedDataset, build_validated_dataset

RESULTS = Path(__file__).resolve().parent / "results"


def generate(root: Path, count: int, side: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(count):
        label = str(index % 10)
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        pixels = (rng.integers(0, 60, (side, side)) + int(label) * 19).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{index:06d}.png")


def time_build(manifest, workers: int | None, destination: Path) -> tuple[float, ValidatedDataset]:
    start = time.perf_counter()
    validated = build_validated_dataset(manifest, GeometryConfig(), destination, workers=workers)
    return time.perf_counter() - start, validated


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--side", type=int, default=28, help="image width and height in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="bench-validation-") as temporary:
        root = Path(temporary) / "data"
        start = time.perf_counter()
        generate(root, args.images, args.side)
        generate_s = time.perf_counter() - start
        start = time.perf_counter()
        manifest = scan_dataset(root)
        scan_s = time.perf_counter() - start
        GxSession()  # import Great Expectations once, outside the timings
        load_before = os.getloadavg()[0]
        serial, parallel = [], []
        for repeat in range(args.repeats):
            seconds, _ = time_build(manifest, 1, Path(temporary) / f"serial-{repeat}")
            serial.append(seconds)
            seconds, validated = time_build(manifest, None, Path(temporary) / f"parallel-{repeat}")
            parallel.append(seconds)
        load_after = os.getloadavg()[0]
        stats = validated.statistics().drop(columns=["quarantine_reason"])
        for column in ("width", "height", "brightness", "contrast"):
            stats[column] = stats[column].astype(float)
        start = time.perf_counter()
        session = GxSession()
        stats["quarantine_reason"] = quarantine_reasons(session, stats, ExpectationProfile())
        run_dataset_suites(session, stats, validated.quarantine().iloc[0:0][["path", "reason"]], ExpectationProfile())
        expectations_s = time.perf_counter() - start

    serial_s, parallel_s = statistics.median(serial), statistics.median(parallel)
    result = {
        "benchmark": "validation throughput (decode + statistics + expectations, arrays written)",
        "images": args.images,
        "image_size": f"{args.side}x{args.side} greyscale PNG",
        "cores": cores,
        "repeats": args.repeats,
        "machine": {"python": platform.python_version(), "pillow": PIL.__version__, "processor": platform.machine()},
        "load_average_1min": {"before": round(load_before, 2), "after": round(load_after, 2)},
        "generate_s": round(generate_s, 2),
        "manifest_scan_s": round(scan_s, 2),
        "single_process": {
            "seconds": round(serial_s, 2),
            "images_per_s": round(args.images / serial_s),
            "runs": serial,
        },
        "parallel": {
            "workers": cores,
            "seconds": round(parallel_s, 2),
            "images_per_s": round(args.images / parallel_s),
            "runs": parallel,
        },
        "speedup": round(serial_s / parallel_s, 2),
        # Each parallel run against the single-process run just before it: less skewed by load that comes and goes.
        "speedup_pairwise_median": round(statistics.median(s / p for s, p in zip(serial, parallel, strict=True)), 2),
        "expectations_only": {"seconds": round(expectations_s, 2), "rows_per_s": round(args.images / expectations_s)},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "validation.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "validation.md").write_text(
        "\n".join(
            [
                f"# Validation throughput: {args.images:,} images ({result['image_size']}), {cores} cores",
                "",
                "| variant | seconds | images/s |",
                "| --- | --- | --- |",
                f"| single process (baseline) | {serial_s:.1f} | {args.images / serial_s:,.0f} |",
                f"| parallel decoding, {cores} workers | {parallel_s:.1f} | {args.images / parallel_s:,.0f} |",
                f"| expectations alone (GX suites on the statistics table) | {expectations_s:.1f} | "
                f"{args.images / expectations_s:,.0f} |",
                "",
                f"Speed-up of parallel decoding: {result['speedup']}x (ratio of the medians of {args.repeats} "
                f"alternating runs; median of the per-pair ratios: {result['speedup_pairwise_median']}x). "
                f"Manifest scan (SHA-256 of every file): {scan_s:.1f} s, not included above.",
                "",
                f"Runs (s), single process: {', '.join(f'{run:.1f}' for run in serial)}; "
                f"parallel: {', '.join(f'{run:.1f}' for run in parallel)}. 1-minute load average "
                f"{load_before:.1f} before and {load_after:.1f} after: the machine is shared, and other work on its "
                f"{cores} cores slows the parallel variant most.",
                "",
            ]
        )
    )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
