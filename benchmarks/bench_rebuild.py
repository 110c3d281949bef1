"""Incremental rebuild benchmark: full build, no-op rebuild, one image added, evaluation-only code change.

Each dataset runs in its own worker process with its own MLOPS_HOME and its own copy of the project (the
evaluation-code scenario edits that copy's source for real). Timings are wall-clock seconds of the in-process
`rebuild_pipeline()` call (interpreter start-up excluded; it is the same for every scenario). The naive
alternative, recomputing everything on every change, costs one full build per change; it is measured as the
full build itself.

    python benchmarks/bench_rebuild.py                 # sample digits + 20,000 generated images
    python benchmarks/bench_rebuild.py --generated 2000 --epochs 2   # a quick look
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
    evaluation = project / "mlops_assets" / "lib" / "evaluation.py"
    evaluation.write_text(evaluation.read_text().replace(*EVALUATION_EDIT))
    rows.append(timed("evaluation code changed"))
    return {"dataset_images": sum(1 for _ in dataset.rglob("*.png")), "epochs": epochs, "scenarios": rows}


def run_dataset(name: str, make_dataset, epochs: int, scratch: Path) -> dict:
    project = scratch / f"project-{name}"
    for folder in ("mlops_assets", "bento", "deployments"):
        shutil.copytree(PROJECT_ROOT / folder, project / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project / "pyproject.toml")
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


def to_markdown(results: list[dict], machine: str) -> str:
    lines = [
        "# Incremental rebuild benchmark",
        "",
        f"Machine: {machine}. Wall-clock seconds of one in-process `rebuild_pipeline()` call per scenario.",
        "Naive alternative: recompute everything on every change, i.e. one full build per change.",
        "The promotion gate is relaxed in the benchmark's project copy (it measures rebuild work, not model quality).",
        "",
        "| dataset | images (incl. the one added) | scenario | assets materialized | images decoded | retrained "
        "| seconds | vs. naive full build |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for result in results:
        full = result["scenarios"][0]["seconds"]
        for row in result["scenarios"]:
            materialized = ", ".join(row["materialized"]) or "none"
            decoded = "-" if row["images_decoded"] is None else row["images_decoded"]
            lines.append(
                f"| {result['dataset']} | {result['dataset_images']} | {row['scenario']} | "
                f"{len(row['materialized'])}: {materialized} | {decoded} | {'yes' if row['trained'] else 'no'} | "
                f"{row['seconds']:.2f} | {100 * row['seconds'] / full:.1f} % |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generated", type=int, default=20_000, help="size of the generated dataset")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs in every scenario")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        dataset, project, epochs, output = args.worker
        Path(output).write_text(json.dumps(worker(Path(dataset), Path(project), int(epochs))))
        return

    sys.path.insert(0, str(PROJECT_ROOT))
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
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "rebuild.json").write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    markdown = to_markdown(results, machine)
    (RESULTS / "rebuild.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
