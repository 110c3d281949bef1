"""Validation throughput: decode + statistics + Great Expectations, parallel decoding vs one process, same run.

    .venv/bin/python benchmarks/bench_validation.py [--images 50000] [--repeats 5]
    .venv/bin/python benchmarks/bench_validation.py --report-only   # validation.md and README.md from the JSON

Generates a dataset of small greyscale PNGs (10 classes) in a temporary folder, then alternates
`build_validated_dataset(workers=1)` (the single-process baseline) and `build_validated_dataset(workers=None)`
(one decoding process per core) and reports the medians, and times the expectations alone on the resulting
statistics table. The load average is recorded before and after, since other work on the machine skews both.
Writes validation.json and validation.md to --results (benchmarks/results by default); only a run written there
also rewrites the validation section in README.md.
"""

import argparse
import json
import os
import platform
import statistics
import sys
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

if not __package__:  # run as a script, not imported: the `benchmarks` package lives in the project root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import readme_sections  # noqa: E402

RESULTS = readme_sections.RESULTS
README_SECTION = "validation"


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
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for validation.json and validation.md (README.md is"
        " only rewritten from the committed folder, benchmarks/results)"
    )  # fmt: skip
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite validation.md (and the README's section) from the folder's validation.json",
    )
    args = parser.parse_args()
    if args.report_only:
        write_reports(json.loads((args.results / "validation.json").read_text()), args.results)
        return
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
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "validation.json").write_text(json.dumps(result, indent=1))
    write_reports(result, args.results)
    print(json.dumps(result, indent=1))


def pair_ratios(result: dict) -> list[float]:
    """Each single-process run over the parallel run right after it: above 1, parallel was faster in that pair."""
    return [s / p for s, p in zip(result["single_process"]["runs"], result["parallel"]["runs"], strict=True)]


def summary(result: dict) -> str:
    """The table and what the runs show, computed from `result`: the part README.md shows."""
    images, cores, repeats = result["images"], result["cores"], result["repeats"]
    serial, parallel = result["single_process"], result["parallel"]
    expectations = result["expectations_only"]
    ratios = pair_ratios(result)
    wins = sum(ratio > 1 for ratio in ratios)
    speedup = result["speedup"]
    load = result["load_average_1min"]
    busy = load["before"] >= 0.5
    return "\n".join(
        [
            f"{images:,} generated {result['image_size']}s, {cores} cores: decode + statistics + all expectations +"
            f" writing the arrays, single process and parallel decoding alternated {repeats}"
            f" {'time' if repeats == 1 else 'times'} in one run (medians).",
            "",
            "| variant | seconds | images/s |",
            "| --- | ---: | ---: |",
            f"| single process (baseline) | {serial['seconds']:.1f} | {serial['images_per_s']:,} |",
            f"| parallel decoding, {parallel['workers']} worker processes | {parallel['seconds']:.1f} |"
            f" {parallel['images_per_s']:,} |",
            f"| expectations alone (GX suites on the {images:,}-row statistics table) | {expectations['seconds']:.1f} |"
            f" {expectations['rows_per_s']:,} |",
            "",
            f"Parallel decoding was {'faster' if speedup > 1 else 'not faster'} than one process: {speedup}x on the"
            f" medians, {result['speedup_pairwise_median']}x as the median of the per-pair ratios, which range from"
            f" {min(ratios):.2f}x to {max(ratios):.2f}x; parallel was faster in {wins} of the {repeats} pairs."
            f" Manifest scan (SHA-256 of every file): {result['manifest_scan_s']:.1f} s, not included above.",
            "",
            f"Runs (s), single process: {', '.join(f'{run:.1f}' for run in serial['runs'])}; parallel:"
            f" {', '.join(f'{run:.1f}' for run in parallel['runs'])}. 1-minute load average {load['before']:.1f}"
            f" before and {load['after']:.1f} after: "
            + (
                f"other work was running on the {cores} cores during the run and competed with the workers for them."
                if busy
                else "the machine was otherwise idle when the run started."
            ),
            "",
        ]
    )


def markdown(result: dict) -> str:
    """benchmarks/results/validation.md."""
    return "# Validation throughput\n\n" + summary(result)


def write_reports(result: dict, results: Path) -> None:
    """validation.md, and the README's section when `results` is the committed folder."""
    (results / "validation.md").write_text(markdown(result))
    if readme_sections.is_committed(results):
        readme_sections.update_readme(README_SECTION, summary(result))


if __name__ == "__main__":
    main()
