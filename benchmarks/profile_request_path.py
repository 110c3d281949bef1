"""CPU time per request of the service's request path and of the naive server's, layer by layer, in-process.

    .venv/bin/python benchmarks/profile_request_path.py --variant before=git:HEAD --variant after=. [--models digits]

At concurrency 1 a worker's event loop is busy all the time (the client's turn-around overlaps the work the worker
does after sending its answer), so requests/s = 1 / CPU time per request, and the concurrency-1 ratio to the naive
server is the ratio of their CPU times per request. A wrk run on a shared 2-core machine measures that with a
spread of +-10 % or more (`serving_ab.md`); this measures it with no sockets, no load generator and no second
process: each variant's worker is started exactly as `bentoml serve` starts it (BentoML's worker entry point, its
command line and environment read from a real server of that variant), except that uvicorn's server loop is
replaced by a driver that calls the worker's ASGI app with the benchmark's single-image request, and the naive
server's app is driven the same way. It counts the event loop's thread only. What it leaves out (uvicorn's HTTP
parsing, the socket, the process's other threads) runs the same uvicorn code in both servers, yet wrk's ratios have
come out lower than this one's (README): not everything outside the app costs the same in both.

Every server's driver starts and warms up, then the servers take turns, one round each in an order rotated from
round to round, while the others wait idle: a round answers --requests requests, measured in thread CPU time. The
concurrency-1 ratio is the median of the per-round ratios of the naive server's time to the service's, so drift on
the machine affects both sides of a ratio alike. After the untimed rounds, --timed-rounds more run with a timer
around every layer (middleware, service step, forward pass), which gives each layer's own time (its time less that
of the layers it calls); the timers cost a few µs each, so the report gives the timed and untimed totals.
Variants are given as for `bench_serving_ab.py`.

Writes request_path.json and request_path.md to --results (benchmarks/results by default).
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a script, not imported: the `benchmarks` package lives in the project root
    sys.path.insert(0, str(ROOT))

from benchmarks import readme_sections  # noqa: E402
from benchmarks.bench_serving import CONFIGURATIONS, multipart_body  # noqa: E402
from benchmarks.bench_serving_ab import (  # noqa: E402
    ServiceVariant,
    fingerprint,
    scratch_home,
    trained_model,
    variant_tree,
)

NAIVE = "naive"
DRIVER = Path(__file__).resolve().parent / "request_path_driver.py"


def _worker_command(variant: ServiceVariant) -> tuple[list[str], dict[str, str]]:
    """A running server's first worker: its arguments (after `-m module`) and environment."""
    import psutil

    workers = [p for p in psutil.Process(variant.process.pid).children(recursive=True) if "--fd" in p.cmdline()]
    if not workers:
        raise RuntimeError(f"no worker process found under the server of variant {variant.name}")
    command = workers[0].cmdline()
    return command[command.index("-m") + 2 :], workers[0].environ()


class Driver:
    """One server's driver process (request_path_driver.py), started, warmed up and waiting for commands."""

    def __init__(self, name: str, spec: dict, env: dict[str, str], cwd: Path, work: Path) -> None:
        self.name = name
        spec_file = work / f"driver-{name}.json"
        spec_file.write_text(json.dumps(spec))
        self.log = work / f"driver-{name}.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, str(DRIVER), str(spec_file)], env=env, cwd=cwd, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=log, text=True,
            )  # fmt: skip
        self.ready = self._reply()

    def round(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._reply()

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.write("quit\n")
                self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def _reply(self) -> dict:
        for line in self.process.stdout:  # anything else the server prints is skipped
            if line.startswith("REPLY "):
                return json.loads(line[len("REPLY ") :])
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"the driver of {self.name} ended ({self.process.wait()}) without answering:\n{tail}")


def _drivers(args: argparse.Namespace, trees: dict[str, Path], home: Path, work: Path, configuration) -> dict:
    """Every server's driver for one model, started one after the other (a variant's command line and environment
    read from a real server of it)."""
    from mlops_assets.packaging import serving_arguments

    tag, model_dir, images = trained_model(home, configuration)
    body = work / f"{configuration.name}-request.bin"
    body.write_bytes(multipart_body(images[:1]))
    spec = {"body": str(body), "requests": args.requests}
    drivers: dict[str, Driver] = {}
    try:
        for name, tree in trees.items():
            variant = ServiceVariant(name, tree, {**serving_arguments(), "model_tag": tag}, work)
            try:
                variant.wait_ready()
                argv, env = _worker_command(variant)
            finally:
                variant.stop()
            # The tree first on the path, so its code is what runs.
            drivers[name] = Driver(name, {**spec, "server": name, "worker_argv": argv},
                                   {**env, "PYTHONPATH": str(tree)}, tree, work)  # fmt: skip
        naive_env = {**os.environ, "NAIVE_MODEL_DIR": str(model_dir), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        drivers[NAIVE] = Driver(NAIVE, {**spec, "server": NAIVE}, naive_env, ROOT, work)
    except BaseException:
        for driver in drivers.values():
            driver.close()
        raise
    return drivers


def _rounds(drivers: dict, command: str, count: int, label: str) -> dict[str, list[dict]]:
    """`count` rounds of `command`, every server once per round, in an order rotated from round to round."""
    names = list(drivers)
    results: dict[str, list[dict]] = {name: [] for name in names}
    for index in range(count):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(drivers[name].round(command))
        print(f"{label} round {index + 1}: " + ", ".join(f"{n} {results[n][-1]['us_per_request']:.0f}" for n in names))
    return results


def run(args: argparse.Namespace) -> dict:
    models = {}
    with scratch_home(args.home, "request-path-") as (home, work):
        try:
            trees = {name: variant_tree(name, source, work) for name, source in args.variants.items()}
        except ValueError as error:
            sys.exit(str(error))
        load_before = os.getloadavg()[0]
        for configuration in [c for c in CONFIGURATIONS if c.name in args.models]:
            drivers = _drivers(args, trees, home, work, configuration)
            try:
                untimed = _rounds(drivers, "untimed", args.rounds, configuration.name)
                timed = _rounds(drivers, "timed", args.timed_rounds, f"{configuration.name} timed")
            finally:
                for driver in drivers.values():
                    driver.close()
            models[configuration.name] = {
                name: {
                    "rounds_us": [result["us_per_request"] for result in untimed[name]],
                    "timed_rounds_us": [result["us_per_request"] for result in timed[name]],
                    "timed_layers_own_us": [result["layers_own_us"] for result in timed[name]],
                    "layers_missing": drivers[name].ready["layers_missing"],
                }
                for name in drivers
            }
        variants = {
            name: {"source": "this working tree" if source == "." else source, "fingerprint": fingerprint(trees[name])}
            for name, source in args.variants.items()
        }
    return {
        "description": args.describe,
        "note": f"{os.cpu_count()} CPU cores shared with other work (1-minute load average {load_before:.1f} before"
        f" the run, {os.getloadavg()[0]:.1f} after).",
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "timed_rounds": args.timed_rounds,
        "variants": variants,
        "models": models,
    }


def _paired_ratios(naive: list[float], server: list[float]) -> list[float]:
    return [n / s for n, s in zip(naive, server, strict=True)]


def _over_previous(servers: dict, names: list[str], index: int) -> str:
    """The variant at `index` against the one before it, round by round; "" for the first variant and the naive
    server."""
    if index == 0 or names[index] == NAIVE:
        return ""
    ratios = _paired_ratios(servers[names[index - 1]]["rounds_us"], servers[names[index]]["rounds_us"])
    return f"{statistics.median(ratios):.2f}x ({sum(ratio > 1 for ratio in ratios)} of {len(ratios)})"


def markdown(report: dict) -> str:
    """request_path.md: per model, each server's CPU time per request, its ratio to the naive server's, and each
    layer's own time."""
    names = [*report["variants"], NAIVE]
    header = " | ".join("(b)" if name == NAIVE else f"`{name}`" for name in names)
    lines = [
        "# CPU time per request, layer by layer",
        "",
        "Written by `benchmarks/profile_request_path.py` from `request_path.json`. " + report["description"],
        "",
        f"{report['note']} Each server's app driven in-process by its own driver process with single-image multipart"
        f" requests, one at a time (BentoML's worker, uvicorn's event loop; no sockets): {report['rounds']} rounds"
        f" of {report['requests_per_round']} requests per server, the servers taking turns in an order rotated from"
        f" round to round; thread CPU time. Then {report['timed_rounds']} rounds with a timer around every layer.",
        "",
        "Servers: "
        + "; ".join(
            f"`{name}` ({details['source']}; files {details['fingerprint']})"
            for name, details in report["variants"].items()
        )
        + "; (b) the naive server's app (`benchmarks/naive_server.py`).",
    ]
    for model, servers in report["models"].items():
        naive = servers[NAIVE]["rounds_us"]
        ratios = {name: _paired_ratios(naive, servers[name]["rounds_us"]) for name in names}
        lines += [
            "",
            f"## `{model}`",
            "",
            f"| µs per request | {header} |",
            "| --- |" + " ---: |" * len(names),
            "| **CPU time per request** (median round) | "
            + " | ".join(f"**{statistics.median(servers[n]['rounds_us']):.0f}**" for n in names)
            + " |",
            "| (b)'s time / this server's, per round: median (range) = the concurrency-1 ratio it implies | "
            + " | ".join(
                f"{statistics.median(ratios[n]):.2f}x ({min(ratios[n]):.2f}-{max(ratios[n]):.2f})" for n in names
            )
            + " |",
            "| the server to the left's time / this server's, per round: median (rounds this one was faster) | "
            + " | ".join(_over_previous(servers, names, index) for index in range(len(names)))
            + " |",
            "| fastest round (the least disturbed by other work on the machine) | "
            + " | ".join(f"{min(servers[n]['rounds_us']):.0f}" for n in names)
            + " |",
            "| (b)'s fastest round / this server's | "
            + " | ".join(f"{min(naive) / min(servers[n]['rounds_us']):.2f}x" for n in names)
            + " |",
            "| with the layer timers (median round) | "
            + " | ".join(f"{statistics.median(servers[n]['timed_rounds_us']):.0f}" for n in names)
            + " |",
            "",
            f"| layer: own time with the timers, median round (µs per request) | {header} |",
            "| --- |" + " ---: |" * len(names),
        ]
        layers: list[str] = []
        for name in names:
            for layer in servers[name]["timed_layers_own_us"][0]:
                if layer not in layers:
                    layers.append(layer)
        for layer in layers:
            cells = []
            for name in names:
                values = [r[layer] for r in servers[name]["timed_layers_own_us"] if layer in r]
                cells.append(f"{statistics.median(values):.0f}" if values else "")
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", metavar="NAME=SOURCE", help="required unless --report-only")
    parser.add_argument("--describe", default="", help="what the measurement is for, for the report")
    parser.add_argument("--models", nargs="+", choices=[c.name for c in CONFIGURATIONS], default=["digits"])
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=15, help="untimed rounds per server")
    parser.add_argument("--timed-rounds", type=int, default=5, help="rounds with the layer timers per server")
    parser.add_argument("--home", type=Path, help="MLOPS_HOME to keep trained models in (shared with the A/B tool)")
    parser.add_argument("--results", type=Path, default=readme_sections.RESULTS)
    parser.add_argument("--report-only", action="store_true", help="rewrite request_path.md from request_path.json")
    args = parser.parse_args()
    if not args.report_only and not args.variant:
        parser.error("give at least one --variant NAME=SOURCE (or --report-only)")
    if args.report_only:
        report = json.loads((args.results / "request_path.json").read_text())
    else:
        args.variants = dict(value.split("=", 1) for value in args.variant or [])
        report = run(args)
        args.results.mkdir(parents=True, exist_ok=True)
        (args.results / "request_path.json").write_text(json.dumps(report, indent=1))
    (args.results / "request_path.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
