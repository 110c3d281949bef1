"""Side-by-side A/B of service variants against each other and the naive server, on a machine others also use.

    .venv/bin/python benchmarks/bench_serving_ab.py --experiment NAME --describe "what changed" \\
        --variant before=git:HEAD --variant after=. [--models digits rgb32] [--loads c1 c64] [--rounds 6]

A variant is a source tree of the service: `.` (this working tree), `git:<revision>` (exported with `git archive`,
nothing in the checkout changes) or a folder holding `bento/` and `mlops_assets/`, optionally followed by patches
applied to a copy of it (`.+benchmarks/ab_patches/no-inline.patch`: this tree without one change). Every variant is
served from its tree by `bentoml serve bento.service:ImageClassifier` with the serving settings of
deployments/local.yaml, and the naive server (b) runs beside them as `bench_serving.py` deploys it.

All servers run at once, idle but for the one under load. Each round gives every server one short wrk run per load,
in an order rotated from round to round, so the runs compared are seconds apart. The report gives medians over the
rounds and, for each pair of servers compared, the median of the per-round ratios: on a shared machine the absolute
rates drift with other work, the paired ratios far less.

Writes the experiment into serving_ab.json (other experiments there are kept) and renders serving_ab.md, in
--results (benchmarks/results by default).
"""

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a script, not imported: the `benchmarks` package lives in the project root
    sys.path.insert(0, str(ROOT))

from benchmarks import readme_sections  # noqa: E402
from benchmarks.bench_serving import (  # noqa: E402
    CONFIGURATIONS,
    CPUS,
    free_port,
    lua_script,
    multipart_body,
    require_wrk,
    run_wrk,
    start_naive,
    stop_naive,
    train_benchmark_model,
)
from benchmarks.serving_ab_report import NAIVE, markdown  # noqa: E402
from benchmarks.serving_report import BATCH_CONCURRENCY, BATCH_IMAGES  # noqa: E402

LOADS = {"c1": 1, "c64": 64, "batch64": BATCH_CONCURRENCY}
READY_TIMEOUT_S = 180
WARM_UP_S = 2


def variant_tree(name: str, source: str, work: Path) -> Path:
    """The source tree a variant is served from: `BASE[+PATCH...]`; ValueError naming what is wrong with `source`."""
    base, *patches = source.split("+")
    tree = _base_tree(name, base, work)
    if not patches:
        return tree
    patched = work / f"patched-{name}"
    for folder in ("bento", "mlops_assets"):
        shutil.copytree(tree / folder, patched / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for patch in patches:
        path = (ROOT / patch).resolve()
        if not path.is_file():
            raise ValueError(f"variant {name}: no patch file {patch} (paths are relative to the project root)")
        applied = subprocess.run(["git", "apply", str(path)], cwd=patched, capture_output=True, text=True, check=False)
        if applied.returncode != 0:
            raise ValueError(f"variant {name}: {patch} does not apply to {base}: {applied.stderr.strip()}")
    return patched


def _base_tree(name: str, source: str, work: Path) -> Path:
    if source == ".":
        return ROOT
    if source.startswith("git:"):
        revision = source.removeprefix("git:")
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "bento", "mlops_assets"],
            capture_output=True,
            check=False,
        )
        if archive.returncode != 0:
            raise ValueError(f"variant {name}: git cannot export {revision!r}: {archive.stderr.decode().strip()}")
        tree = work / f"tree-{name}"
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as members:
            members.extractall(tree, filter="data")
        return tree
    tree = Path(source).resolve()
    if not (tree / "bento" / "service.py").is_file() or not (tree / "mlops_assets").is_dir():
        raise ValueError(f"variant {name}: {tree} holds no bento/service.py and mlops_assets/ (a source tree)")
    return tree


def fingerprint(tree: Path) -> str:
    """A short hash of the service's code in `tree` (bento/ and mlops_assets/, Python files), to tell variants apart."""
    digest = hashlib.sha256()
    for path in sorted([*tree.glob("bento/*.py"), *tree.glob("mlops_assets/**/*.py")]):
        digest.update(str(path.relative_to(tree)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


@contextlib.contextmanager
def scratch_home(given: Path | None, prefix: str) -> Iterator[tuple[Path, Path]]:
    """The servers' MLOPS_HOME (`given`, or a new temporary folder named `prefix`...) and a work folder in it for the
    variants' trees and the servers' files. After a run that finished, or one refused before it started (SystemExit),
    the work folder goes, and a temporary home with it (a given home keeps its trained models for the next run);
    after a failure both stay, and stderr says where, for the servers' logs."""
    home = given or Path(tempfile.mkdtemp(prefix=prefix))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["MLOPS_HOME"] = str(home)
    os.environ.pop("MLOPS_API_KEY", None)
    work = Path(tempfile.mkdtemp(prefix="trees-", dir=home))
    try:
        yield home, work
    except SystemExit:
        shutil.rmtree(work if given else home, ignore_errors=True)
        raise
    except BaseException:
        print(f"The variants' trees and the servers' files are kept in {home} (remove it when done).", file=sys.stderr)
        raise
    shutil.rmtree(work if given else home, ignore_errors=True)


class ServiceVariant:
    """One variant served from its tree on a free loopback port, in its own process group."""

    def __init__(self, name: str, tree: Path, arguments: dict, work: Path) -> None:
        import yaml

        from mlops_assets import settings

        self.name, self.port = name, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        arguments_file = work / f"{name}-arguments.yaml"
        arguments_file.write_text(yaml.safe_dump(arguments))
        self.log = work / f"{name}-server.log"
        command = [str(Path(sys.executable).parent / "bentoml"), "serve", "bento.service:ImageClassifier",
                   "--working-dir", str(tree), "--host", "127.0.0.1", "--port", str(self.port),
                   "--arg-file", str(arguments_file)]  # fmt: skip
        # The tree's packages come first on the path, so its mlops_assets is imported, not the installed one.
        env = {**os.environ, **settings.export_environment(), "PYTHONPATH": str(tree)}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
                raise RuntimeError(f"variant {self.name}'s server exited with {self.process.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"variant {self.name}'s server was not ready within {READY_TIMEOUT_S} s; see {self.log}")

    def stop(self) -> None:
        from mlops_assets.resources.local_deployer import stop_process_group

        stop_process_group(self.process.pid)
        self.process.wait(timeout=30)


def trained_model(home: Path, configuration) -> tuple[str, Path, list[bytes]]:
    """The configuration's benchmark model, trained once per --home and reused by later experiments."""
    record = home / configuration.name / "benchmark-model.json"
    if record.exists():
        saved = json.loads(record.read_text())
        return saved["tag"], Path(saved["model_dir"]), [Path(path).read_bytes() for path in saved["images"]]
    tag, model_dir, images = train_benchmark_model(home, configuration)
    image_dir = home / configuration.name / "test-images"
    image_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(images):
        path = image_dir / f"{index}.png"
        path.write_bytes(data)
        paths.append(str(path))
    record.write_text(json.dumps({"tag": tag, "model_dir": str(model_dir), "images": paths}))
    return tag, model_dir, images


def measure_model(args: argparse.Namespace, configuration, trees: dict[str, Path], home: Path, wrk: str) -> dict:
    """Every server's runs at every load for one model: {"loads": {load: {server: [run, ...]}}}."""
    from mlops_assets.packaging import serving_arguments

    tag, model_dir, images = trained_model(home, configuration)
    work = Path(tempfile.mkdtemp(prefix=f"{configuration.name}-", dir=home))
    scripts = {
        "c1": lua_script(work / "single.lua", multipart_body(images[:1])),
        "c64": work / "single.lua",
        "batch64": lua_script(work / "batch.lua", multipart_body((images * BATCH_IMAGES)[:BATCH_IMAGES])),
    }
    arguments = {**serving_arguments(), "model_tag": tag}
    variants = [ServiceVariant(name, tree, arguments, work) for name, tree in trees.items()]
    naive = None
    try:
        for variant in variants:
            variant.wait_ready()
        naive, naive_url, _ = start_naive(model_dir, CPUS)
        urls = {**{variant.name: variant.url for variant in variants}, NAIVE: naive_url}
        for url in urls.values():  # first requests pay one-time costs (imports, allocations) in every worker
            run_wrk(wrk, f"{url}/predict", 64, WARM_UP_S, scripts["c64"])
        names = list(urls)
        runs: dict[str, dict[str, list[dict]]] = {load: {name: [] for name in names} for load in args.loads}
        for round_index in range(args.rounds):
            shift = round_index % len(names)
            order = names[shift:] + names[:shift]
            for load in args.loads:
                for name in order:
                    result = run_wrk(wrk, f"{urls[name]}/predict", LOADS[load], args.duration, scripts[load])
                    runs[load][name].append({**result, "round": round_index})
                    rate, p50 = result["requests_per_s"], result["p50_ms"]
                    print(f"{configuration.name} {round_index + 1} {load} {name}: {rate:.0f} req/s, p50 {p50:.2f} ms")
    finally:
        for variant in variants:
            variant.stop()
        if naive is not None:
            stop_naive(naive)
    return {"model_tag": tag, "loads": runs}


def run_experiment(args: argparse.Namespace, trees: dict[str, Path], home: Path) -> dict:
    wrk = require_wrk()
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    chosen = [configuration for configuration in CONFIGURATIONS if configuration.name in args.models]
    models = {configuration.name: measure_model(args, configuration, trees, home, wrk) for configuration in chosen}
    return {
        "description": args.describe,
        "note": f"{CPUS} CPU cores shared with other work (1-minute load average {load_before:.1f} before the run,"
        f" {os.getloadavg()[0]:.1f} after).",
        "reference": next(iter(args.variants)),
        "variants": {
            name: {
                "source": "this working tree" if source == "." else source,
                "description": args.variant_descriptions.get(name, ""),
                "fingerprint": fingerprint(trees[name]),
            }
            for name, source in args.variants.items()
        },
        "rounds": args.rounds,
        "duration_s_per_run": args.duration,
        "wall_s": round(time.monotonic() - started, 1),
        "models": models,
    }


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        name, separator, text = value.partition("=")
        if not separator or not name:
            sys.exit(f"{option} takes NAME=VALUE, got {value!r}.")
        pairs[name] = text
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", required=True, help="the experiment's name in serving_ab.json")
    parser.add_argument("--describe", required=True, help="what the variants differ in, for the report")
    parser.add_argument(
        "--variant", action="append", required=True, metavar="NAME=SOURCE",
        help="a service variant: NAME=. (this tree), NAME=git:REV or NAME=FOLDER; the first is the reference",
    )  # fmt: skip
    parser.add_argument("--variant-description", action="append", default=[], metavar="NAME=TEXT")
    parser.add_argument("--models", nargs="+", choices=[c.name for c in CONFIGURATIONS], default=["digits", "rgb32"])
    parser.add_argument("--loads", nargs="+", choices=list(LOADS), default=["c1", "c64"])
    parser.add_argument("--rounds", type=int, default=6, help="rounds of runs (each server once per load per round)")
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--home", type=Path, help="MLOPS_HOME to keep trained models in between experiments")
    parser.add_argument("--results", type=Path, default=readme_sections.RESULTS, help="folder of serving_ab.json")
    args = parser.parse_args()
    args.variants = _pairs(args.variant, "--variant")
    args.variant_descriptions = _pairs(args.variant_description, "--variant-description")
    if args.rounds < 1 or args.duration < 1:
        parser.error("--rounds and --duration must be at least 1.")
    with scratch_home(args.home, "bench-serving-ab-") as (home, work):
        try:
            trees = {name: variant_tree(name, source, work) for name, source in args.variants.items()}
        except ValueError as error:
            sys.exit(str(error))
        experiment = run_experiment(args, trees, home)
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / "serving_ab.json"
    document = json.loads(path.read_text()) if path.exists() else {"experiments": {}}
    document["experiments"][args.experiment] = experiment
    path.write_text(json.dumps(document, indent=1))
    (args.results / "serving_ab.md").write_text(markdown(document))
    print(markdown({"experiments": {args.experiment: experiment}}))


if __name__ == "__main__":
    main()
