"""Dataset store benchmark: what keeping every data version costs when one image is added to a 20,000-image dataset.

The local store of the code location (lib/data/content_store.py, as raw_images uses it) on generated 8x8 greyscale
PNGs: the first version kept, the unchanged folder kept again, one image added, the new version laid out as a folder
(hard links) and a pinned version checked whole. Each scenario scans the folder as raw_images does (hashes cached by
size, mtime and inode) and keeps the version; seconds are wall-clock, bytes are file contents and, beside them, the
disk blocks allocated. The naive alternative, a copy of the folder per version, costs the whole dataset every time.

    python benchmarks/bench_dataset_store.py                 # 20,000 images (about a minute)
    python benchmarks/bench_dataset_store.py --images 2000 --results /tmp/store   # a quick look
    python benchmarks/bench_dataset_store.py --report-only   # dataset_store.md and README.md from the committed JSON

Only a run written to benchmarks/results (the default --results) rewrites the dataset store section of README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "benchmarks" / "results"
README_SECTION = "dataset_store"


def _usage(folder: Path) -> tuple[int, int, int]:
    """(files, content bytes, allocated bytes) of the distinct files (by inode) below `folder`."""
    seen: dict[int, os.stat_result] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            found = path.stat()
            seen.setdefault(found.st_ino, found)
    return len(seen), sum(s.st_size for s in seen.values()), sum(s.st_blocks * 512 for s in seen.values())


def measure(images: int, scratch: Path) -> dict:
    """Run the scenarios on a generated dataset of `images` files in `scratch`; returns the report's body."""
    from benchmarks.synthetic_images import generate_dataset
    from mlops_assets.lib.data.content_store import LocalContentStore
    from mlops_assets.lib.data.hash_cache import FileHashCache
    from mlops_assets.lib.data.manifest import scan_dataset

    dataset = generate_dataset(scratch / "dataset", images, side=8)
    store = LocalContentStore(scratch / "store", scratch / "versions")
    cache = scratch / "hashes.json"
    rows = []

    def keep(name: str) -> dict:
        before = _usage(store.root)
        started = time.perf_counter()
        manifest = scan_dataset(dataset, FileHashCache(cache))
        scanned = time.perf_counter()
        kept = store.keep(manifest, dataset)
        done = time.perf_counter()
        after = _usage(store.root)
        row = {
            "scenario": name,
            "images": len(manifest.entries),
            "scan_seconds": round(scanned - started, 3),
            "keep_seconds": round(done - scanned, 3),
            "blobs_added": kept.blobs_added,
            "files_added": after[0] - before[0],  # blobs and the version's manifest
            "bytes_added": after[1] - before[1],
            "allocated_bytes_added": after[2] - before[2],
            "dataset_bytes": sum(entry.size for entry in manifest.entries),
        }
        rows.append(row)
        return {"manifest": manifest, **row}

    keep("first version kept")
    keep("unchanged folder kept again")
    generate_dataset(scratch / "one more", 1, classes=1, side=8, seed=99)
    added = next((scratch / "one more").rglob("*.png"))
    added.rename(dataset / "class_0" / "added.png")
    last = keep("one image added")

    for name, verify in (("new version laid out as a folder", False), ("pinned version checked whole", True)):
        before = _usage(scratch)
        started = time.perf_counter()
        folder = store.local_root(last["manifest"], verify=verify)
        seconds = time.perf_counter() - started
        after = _usage(scratch)
        rows.append(
            {
                "scenario": name,
                "images": len(last["manifest"].entries),
                "scan_seconds": None,
                "keep_seconds": round(seconds, 3),
                "blobs_added": 0,
                "files_added": after[0] - before[0],  # hard links share their blob's inode: no new file
                "bytes_added": after[1] - before[1],
                "allocated_bytes_added": after[2] - before[2],
                "dataset_bytes": last["dataset_bytes"],
                "links": sum(1 for path in folder.rglob("*") if path.is_file() and path.stat().st_nlink > 1),
            }
        )
    return {"generated_images": images, "added_image_bytes": added_size(dataset), "scenarios": rows}


def added_size(dataset: Path) -> int:
    return (dataset / "class_0" / "added.png").stat().st_size


def _cell(value: int | float | None) -> str:
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else f"{value:.2f}"


def summary(report: dict) -> str:
    """The method, the table and what it shows, computed from the report: the part README.md shows."""
    rows = report["scenarios"]
    lines = [
        f"Machine: {report['machine']}. {report['generated_images']:,} generated 8x8 greyscale PNGs, then one more; "
        "the local store as raw_images uses it (scan with cached hashes, then keep). Bytes are file contents; "
        "allocated bytes are the disk blocks behind them (a tiny file still takes a block).",
        "",
        "| scenario | images | scan s | keep / lay-out s | blobs added | files added | bytes added | allocated "
        "bytes added |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lines.append(
            f"| {row['scenario']} | {row['images']:,} | {_cell(row['scan_seconds'])} | {_cell(row['keep_seconds'])} "
            f"| {row['blobs_added']:,} | {row['files_added']:,} | {row['bytes_added']:,} | "
            f"{row['allocated_bytes_added']:,} |"
        )
    return "\n".join([*lines, "", *conclusions(report), ""])


def conclusions(report: dict) -> list[str]:
    """What the table shows, computed from it."""
    rows = {row["scenario"]: row for row in report["scenarios"]}
    first, again, one = rows["first version kept"], rows["unchanged folder kept again"], rows["one image added"]
    laid_out, checked = rows["new version laid out as a folder"], rows["pinned version checked whole"]
    manifest_bytes = one["bytes_added"] - report["added_image_bytes"]
    return [
        f"- **One image added**: {one['blobs_added']} blob ({report['added_image_bytes']:,} bytes, the image) and the "
        f"new version's manifest ({manifest_bytes:,} bytes: its tree and the one chunk of entries that changed; "
        f"{one['files_added']} files in all) in {one['scan_seconds'] + one['keep_seconds']:.2f} s "
        f"(scan {one['scan_seconds']:.2f} s, keep {one['keep_seconds']:.2f} s). A copy of the folder per version "
        f"would add {one['dataset_bytes']:,} bytes in {one['images']:,} files.",
        f"- **Unchanged folder**: {again['blobs_added']} blobs, {again['bytes_added']:,} bytes added in "
        f"{again['scan_seconds'] + again['keep_seconds']:.2f} s; the first version cost {first['blobs_added']:,} "
        f"blobs and its manifest, {first['bytes_added']:,} bytes (the dataset's {first['dataset_bytes']:,} bytes, "
        "kept once, and its manifest).",
        f"- **Laying out a version** for training: {laid_out['links']:,} hard links to the blobs, "
        f"{laid_out['bytes_added']:,} bytes added, in {laid_out['keep_seconds']:.2f} s; checking a pinned version "
        f"whole (every file read and hashed) took {checked['keep_seconds']:.2f} s.",
    ]


def markdown(report: dict) -> str:
    """benchmarks/results/dataset_store.md."""
    return "# Dataset store benchmark\n\n" + summary(report)


def write_reports(report: dict, results: Path) -> None:
    """dataset_store.md, and the README's section when `results` is the committed folder."""
    from benchmarks import readme_sections

    (results / "dataset_store.md").write_text(markdown(report))
    if readme_sections.is_committed(results):
        readme_sections.update_readme(README_SECTION, summary(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=20_000, help="size of the generated dataset")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for dataset_store.json and .md (README.md is only"
        " rewritten from the committed folder, benchmarks/results)"
    )  # fmt: skip
    parser.add_argument(
        "--report-only", action="store_true", help="measure nothing: rewrite the reports from the folder's JSON"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(PROJECT_ROOT))
    if args.report_only:
        write_reports(json.loads((args.results / "dataset_store.json").read_text()), args.results)
        return
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    with tempfile.TemporaryDirectory(prefix="bench-dataset-store-") as scratch:
        report = {"machine": machine, **measure(args.images, Path(scratch))}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "dataset_store.json").write_text(json.dumps(report, indent=1))
    write_reports(report, args.results)
    print(markdown(report))


if __name__ == "__main__":
    main()
