"""Incremental rebuild benchmark: full build, no-op rebuild, one image added, evaluation-only code change.

Each dataset runs in its own worker process with its own MLOPS_HOME and its own copy of the project (the
evaluation-code scenario edits that copy's source for real). Timings are wall-clock seconds of the in-process
`rebuild_pipeline()` call (interpreter start-up excluded; it is the same for every scenario). The naive
alternative, recomputing everything on every change, costs one full build per change; it is measured as the
full build itself.

    python benchmarks/bench_rebuild.py                 # sample digits + 20,000 generated images
    python benchmarks/bench_rebuild.py --generated 2000 --epochs 2 --results /tmp/rebuild   # a quick look
    python benchmarks/bench_rebuild.py --report-only   # rebuild.md and README.md from the committed rebuild.json

Only a run written to benchmarks/results (the default --results) rewrites the rebuild section of README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = PROJECT_ROOT / "benchmarks" / "results"
README_SECTION = "rebuild"
EVALUATION_EDIT = (
    "probabilities = model.predict_uint8(test.images)",
    "probabilities = model.predict_uint8(test.images, batch_size=256)",
)


def worker(dataset: Path, project: Path, epochs: int) -> dict:
    """Run the four scenarios in this process; MLOPS_HOME and PYTHONPATH were set by the parent."""
    from mlops_assets.runner import rebuild_pipeline

    config = {"ops": {"trained_model": {"config": {"epochs": epochs}}}}

    def timed(name: str) -> dict:
        started = time.perf_counter()
        summary = rebuild_pipeline(dataset, config)
        seconds = time.perf_counter() - started
        if not summary.success:
            raise RuntimeError(f"scenario {name} failed: {summary.rounds[-1][1].failures}")
        validated = next(
            (
                run.materialized["validated_images"]
                for _, run in summary.rounds
                if "validated_images" in run.materialized
            ),
            {},
        )
        return {
            "scenario": name,
            "seconds": round(seconds, 3),
            "materialized": summary.materialized,
            "images_decoded": validated.get("num_decoded_now"),
            "trained": any(
                "trained_model" in run.materialized and not run.materialized["trained_model"].get("cache_hit")
                for _, run in summary.rounds
            ),
        }

    rows = [timed("full build")]
    rows.append(timed("no-op rebuild"))
    first_label = sorted(p for p in dataset.iterdir() if p.is_dir())[0]
    template = next(first_label.glob("*.png"))
    from PIL import Image, ImageOps

    ImageOps.mirror(Image.open(template)).save(first_label / "added-by-benchmark.png")
    rows.append(timed("one image added"))
    evaluation = project / "mlops_assets" / "lib" / "models" / "evaluation.py"
    source = evaluation.read_text()
    if EVALUATION_EDIT[0] not in source:
        raise RuntimeError(f"{evaluation} no longer contains `{EVALUATION_EDIT[0]}`: update EVALUATION_EDIT.")
    evaluation.write_text(source.replace(*EVALUATION_EDIT))
    rows.append(timed("evaluation code changed"))
    return {"dataset_images": sum(1 for _ in dataset.rglob("*.png")), "epochs": epochs, "scenarios": rows}


def run_dataset(name: str, make_dataset, epochs: int, scratch: Path) -> dict:
    project = scratch / f"project-{name}"
    for folder in ("mlops_assets", "bento", "deployments"):
        shutil.copytree(PROJECT_ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for file_name in ("pyproject.toml", "workspace.yaml"):
        shutil.copy(PROJECT_ROOT / file_name, project / file_name)
    # This measures rebuild work, not model quality: the copy's promotion gate lets every model through, so a
    # slightly worse 5-epoch model cannot stop a scenario half-way.
    environment = project / "deployments" / "local.yaml"
    relaxed = environment.read_text().replace("floor: 0.80", "floor: 0.0").replace("tolerance: 0.01", "tolerance: 1.0")
    environment.write_text(relaxed.replace("per_class_margin: 0.05", "per_class_margin: 1.0"))
    dataset = make_dataset(scratch / f"data-{name}")
    env = {**os.environ, "MLOPS_HOME": str(scratch / f"home-{name}"), "PYTHONPATH": f"{project}:{PROJECT_ROOT}"}
    env.pop("MLOPS_DATASET", None)
    output = scratch / f"result-{name}.json"
    command = [sys.executable, __file__, "--worker", str(dataset), str(project), str(epochs), str(output)]
    subprocess.run(command, env=env, cwd=project, check=True)
    return {"dataset": name, **json.loads(output.read_text())}


def summary(report: dict) -> str:
    """The method, the table and what it shows, computed from the report: the part README.md shows."""
    results = report["results"]
    epochs = sorted({result["epochs"] for result in results})
    lines = [
        f"Machine: {report['machine']}. Wall-clock seconds of one in-process `rebuild_pipeline()` call per scenario"
        f" ({', '.join(map(str, epochs))} training epochs; interpreter start-up excluded). The naive alternative"
        " recomputes everything on every change: one full build per change. The promotion gate is relaxed in the"
        " benchmark's project copy (it measures rebuild work, not model quality).",
        "",
        "| dataset | images (incl. the one added) | scenario | assets materialized | images decoded | retrained "
        "| seconds | vs. naive full build |",
        "| --- | ---: | --- | --- | ---: | --- | ---: | ---: |",
    ]
    for result in results:
        full = result["scenarios"][0]["seconds"]
        for row in result["scenarios"]:
            materialized = ", ".join(row["materialized"]) or "none"
            decoded = "-" if row["images_decoded"] is None else f"{row['images_decoded']:,}"
            lines.append(
                f"| {result['dataset']} | {result['dataset_images']:,} | {row['scenario']} | "
                f"{len(row['materialized'])}: {materialized} | {decoded} | {'yes' if row['trained'] else 'no'} | "
                f"{row['seconds']:.2f} | {100 * row['seconds'] / full:.1f} % |"
            )
    return "\n".join([*lines, "", *conclusions(results), ""])


def conclusions(results: list[dict]) -> list[str]:
    """One bullet per change scenario, over every dataset: its cost against the full build and what it redid."""
    lines = ["Against recomputing everything (computed from the table):", ""]
    for index, scenario in enumerate(row["scenario"] for row in results[0]["scenarios"][1:]):
        pairs = [(result, result["scenarios"][index + 1]) for result in results]
        shares = [100 * row["seconds"] / result["scenarios"][0]["seconds"] for result, row in pairs]
        share = f"{min(shares):.1f} %" if len(shares) == 1 else f"{min(shares):.1f}-{max(shares):.1f} %"
        materialized = sorted({", ".join(row["materialized"]) or "nothing" for _, row in pairs})
        decoded = [
            f"{result['dataset']} {row['images_decoded']:,} of {result['scenarios'][0]['images_decoded']:,}"
            for result, row in pairs
            if row["images_decoded"] is not None
        ]
        trained = {row["trained"] for _, row in pairs}
        lines.append(
            f"- **{scenario}**: {share} of a full build; materialized {' / '.join(materialized)}"
            + (f"; images decoded (of the full build's): {', '.join(decoded)}" if decoded else "; decoded no image")
            + (
                "; retrained"
                if trained == {True}
                else "; no retraining"
                if trained == {False}
                else "; retrained in some"
            )
            + "."
        )
    return lines


def markdown(report: dict) -> str:
    """benchmarks/results/rebuild.md."""
    return "# Incremental rebuild benchmark\n\n" + summary(report)


def write_reports(report: dict, results: Path) -> None:
    """rebuild.md, and the README's section when `results` is the committed folder."""
    from benchmarks import readme_sections

    (results / "rebuild.md").write_text(markdown(report))
    if readme_sections.is_committed(results):
        readme_sections.update_readme(README_SECTION, summary(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", type=int, default=20_000, help="size of the generated dataset")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs in every scenario")
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder for rebuild.json and rebuild.md (README.md is only"
        " rewritten from the committed folder, benchmarks/results)"
    )  # fmt: skip
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: rewrite rebuild.md (and the README's section) from the folder's rebuild.json",
    )
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        dataset, project, epochs, output = args.worker
        Path(output).write_text(json.dumps(worker(Path(dataset), Path(project), int(epochs))))
        return

    sys.path.insert(0, str(PROJECT_ROOT))
    if args.report_only:
        write_reports(json.loads((args.results / "rebuild.json").read_text()), args.results)
        return
    from benchmarks.synthetic_images import generate_dataset
    from mlops_assets.lib.data.sample_data import export_digits

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, CPU only"
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as scratch_name:
        scratch = Path(scratch_name)
        results = [
            run_dataset("sample digits", export_digits, args.epochs, scratch),
            run_dataset(
                f"generated {args.generated}",
                lambda root: generate_dataset(root, args.generated),
                args.epochs,
                scratch,
            ),
        ]
    report = {"machine": machine, "results": results}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "rebuild.json").write_text(json.dumps(report, indent=1))
    write_reports(report, args.results)
    print(markdown(report))


if __name__ == "__main__":
    main()
