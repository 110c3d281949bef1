"""Where a request's time goes: py-spy samples the workers of service variants and of the naive server (b) under the
same wrk load, and the samples are grouped by what the code does (HTTP server, BentoML's API layer, metrics, ...).

    .venv/bin/python benchmarks/profile_serving.py --variant before=git:HEAD --variant after=. \\
        [--models digits] [--concurrency 1] [--duration 10]

Variants are given as for `bench_serving_ab.py`. The servers run one at a time with the same load; py-spy
(`pip install -e '.[dev]'`) records every worker process at --rate samples/s, counting a thread only while it is
running or waiting for a core (an idle thread is not sampled). Each sample goes to the group of the innermost frame
whose file belongs to a group (torch's C++ kernels count as the torch function that called them; a frame of the
standard library, numpy or pydantic counts for the code that called it).
The report gives each group's sampled time per request and its share: on a machine others use, the absolute figures
include time spent waiting for a core, the shares much less so.

Writes serving_profile.json and serving_profile.md to --results (benchmarks/results by default).
"""

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not __package__:  # run as a script, not imported: the `benchmarks` package lives in the project root
    sys.path.insert(0, str(ROOT))

from benchmarks import readme_sections  # noqa: E402
from benchmarks.bench_serving import (  # noqa: E402
    CONFIGURATIONS,
    CPUS,
    lua_script,
    multipart_body,
    require_wrk,
    start_naive,
    stop_naive,
)
from benchmarks.bench_serving_ab import (  # noqa: E402
    ServiceVariant,
    fingerprint,
    scratch_home,
    trained_model,
    variant_tree,
)

NAIVE = "naive_workers"
# (group, what it covers, fragments of a frame's file). A sample belongs to the group of its innermost frame that
# matches one; frames that match none (the standard library, numpy, pydantic) count for their caller.
GROUPS = (
    ("forward pass", "torch and the model code", ("torch/", "mlops_assets/lib/models/")),
    ("image decoding", "Pillow and the image policy", ("PIL/", "mlops_assets/lib/data/")),
    (
        "thread hand-off",
        "the batcher handing passes to its thread and back",
        ("concurrent/futures/", "threading.py", "queue.py", "serving/micro_batcher.py"),
    ),
    ("prediction log", "the sampled prediction log", ("serving/prediction_log.py",)),
    ("request metrics", "Prometheus counters and histograms", ("prometheus_client/", "server/http/instruments.py")),
    # py-spy names OpenTelemetry's ASGI middleware by the end of its path only.
    ("tracing", "OpenTelemetry's ASGI middleware", ("opentelemetry/", "asgi/__init__.py")),
    (
        "BentoML API layer",
        "BentoML's request context, router, IO parsing and validation",
        ("_bentoml_impl/", "_bentoml_sdk/", "bentoml/", "simple_di/", "anyio/"),
    ),
    (
        "service middleware and handler",
        "request guard and its multipart parse, error shape, direct dispatch, timeout, service method",
        # The guard's parser is the `multipart` module (site-packages/multipart.py); python-multipart, Starlette's,
        # parses the naive server's forms.
        ("mlops_assets/lib/serving/", "bento/service.py", "site-packages/multipart.py"),
    ),
    (
        "naive handler",
        "the naive server's handler and form parsing",
        ("naive_server.py", "tempfile.py", "json/", "python_multipart/"),
    ),
    ("Starlette", "Starlette's middleware, router and responses", ("starlette/",)),
    ("HTTP server", "uvicorn, httptools and the event loop", ("uvicorn/", "asyncio/", "uvloop/")),
)
OTHER = "other"
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def frame_group(frame: str) -> str | None:
    """The group of a py-spy frame `function (file:line)` by its file, or None when its file is in no group."""
    match = _FRAME.match(frame)
    path = match.group("file") if match else frame
    return next((name for name, _, fragments in GROUPS if any(fragment in path for fragment in fragments)), None)


def stack_group(frames: list[str]) -> str:
    """The group of a sample: that of its innermost frame in a group (`frames` run from the outermost)."""
    return next((group for frame in reversed(frames) if (group := frame_group(frame))), OTHER)


def samples_by_group(raw: str) -> dict[str, int]:
    """py-spy's raw (collapsed stack) output -> samples per group."""
    counts: collections.Counter = collections.Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        counts[stack_group(stack.split(";"))] += int(count)
    return dict(counts)


def worker_pids(root_pid: int) -> list[int]:
    """The processes under `root_pid` that serve requests: those with no children of their own (the workers)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[parent].append(int(entry.name))
    found, stack = [], [root_pid]
    while stack:
        pid = stack.pop()
        if children.get(pid):
            stack += children[pid]
        elif pid != root_pid:
            found.append(pid)
    return found


def profile_server(url: str, pids: list[int], wrk: str, script: Path, args: argparse.Namespace, work: Path) -> dict:
    """wrk at --concurrency on `url` while py-spy samples `pids` for --duration seconds; samples per group per
    request."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if py_spy is None:
        sys.exit("py-spy is not installed: run `.venv/bin/pip install -e '.[dev]'`.")
    threads = min(args.concurrency, 2)
    load = subprocess.Popen(
        [wrk, "-t", str(threads), "-c", str(args.concurrency), "-d", f"{args.duration + 2}s", "-s", str(script), url],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(1)  # sample the steady state, not the connections opening
    outputs = [work / f"{pid}.txt" for pid in pids]
    recorders = [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(args.rate),
                "--duration",
                str(args.duration),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for pid, output in zip(pids, outputs, strict=True)
    ]
    for recorder in recorders:
        recorder.wait()
    report = load.communicate()[0]
    requests_per_s = float(re.search(r"Requests/sec:\s+([\d.]+)", report).group(1))
    counts: collections.Counter = collections.Counter()
    for output in outputs:
        if output.exists():
            counts.update(samples_by_group(output.read_text()))
    requests = requests_per_s * args.duration
    return {
        "requests_per_s": requests_per_s,
        "samples": dict(counts),
        "us_per_request": {group: 1e6 * count / args.rate / requests for group, count in counts.items()},
    }


def run(args: argparse.Namespace) -> dict:
    wrk = require_wrk()
    with scratch_home(args.home, "profile-serving-") as (home, work):
        return _profile_all(args, wrk, home, work)


def _profile_all(args: argparse.Namespace, wrk: str, home: Path, work: Path) -> dict:
    from mlops_assets.packaging import serving_arguments

    try:
        trees = {name: variant_tree(name, source, work) for name, source in args.variants.items()}
    except ValueError as error:
        sys.exit(str(error))
    load_before = os.getloadavg()[0]
    models = {}
    for configuration in [c for c in CONFIGURATIONS if c.name in args.models]:
        tag, model_dir, images = trained_model(home, configuration)
        script = lua_script(work / f"{configuration.name}.lua", multipart_body(images[:1]))
        servers = {}
        for name, tree in trees.items():
            variant = ServiceVariant(name, tree, {**serving_arguments(), "model_tag": tag}, work)
            try:
                variant.wait_ready()
                subprocess.run([wrk, "-t2", "-c64", "-d2s", "-s", str(script), f"{variant.url}/predict"], check=True,
                               capture_output=True)  # fmt: skip
                servers[name] = profile_server(
                    f"{variant.url}/predict", worker_pids(variant.process.pid), wrk, script, args, work
                )
            finally:
                variant.stop()
        naive, url, _ = start_naive(model_dir, CPUS)
        try:
            subprocess.run([wrk, "-t2", "-c64", "-d2s", "-s", str(script), f"{url}/predict"], check=True,
                           capture_output=True)  # fmt: skip
            servers[NAIVE] = profile_server(f"{url}/predict", worker_pids(naive.pid), wrk, script, args, work)
        finally:
            stop_naive(naive)
        models[configuration.name] = servers
    return {
        "description": args.describe,
        "note": f"{CPUS} CPU cores shared with other work (1-minute load average {load_before:.1f} before the run,"
        f" {os.getloadavg()[0]:.1f} after).",
        "concurrency": args.concurrency,
        "duration_s": args.duration,
        "rate_hz": args.rate,
        "variants": {
            name: {"source": "this working tree" if source == "." else source, "fingerprint": fingerprint(trees[name])}
            for name, source in args.variants.items()
        },
        "models": models,
    }


def markdown(report: dict) -> str:
    """serving_profile.md: per model, each group's sampled time per request on every server, and its share."""
    names = [*report["variants"], NAIVE]
    lines = [
        "# Where a request's time goes",
        "",
        "Written by `benchmarks/profile_serving.py` from `serving_profile.json`. " + report["description"],
        "",
        f"{report['note']} Single-image multipart requests at concurrency {report['concurrency']}; py-spy sampled"
        f" every worker at {report['rate_hz']} Hz for {report['duration_s']} s per server, counting threads that"
        " were running or waiting for a core. Time per request = samples / rate / requests served meanwhile; the"
        " share is of all samples of that server.",
        "",
        "Servers: "
        + "; ".join(
            f"`{name}` ({details['source']}; files {details['fingerprint']})"
            for name, details in report["variants"].items()
        )
        + "; (b) the naive server, uvicorn --workers N.",
    ]
    descriptions = {name: description for name, description, _ in GROUPS}
    for model, servers in report["models"].items():
        header = " | ".join("(b)" if name == NAIVE else f"`{name}`" for name in names)
        lines += [
            "",
            f"## `{model}`",
            "",
            "req/s while sampled: "
            + ", ".join(f"{'(b)' if n == NAIVE else n} {servers[n]['requests_per_s']:.0f}" for n in names)
            + ".",
            "",
            f"| group (µs per request, share) | {header} |",
            "| --- |" + " ---: |" * len(names),
        ]
        for group in [*(name for name, _, _ in GROUPS), OTHER]:
            cells = []
            for name in names:
                total = sum(servers[name]["samples"].values())
                us = servers[name]["us_per_request"].get(group, 0.0)
                share = servers[name]["samples"].get(group, 0) / total if total else 0.0
                cells.append(f"{us:.0f} ({100 * share:.0f} %)")
            label = f"{group}: {descriptions.get(group, 'everything else')}"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        totals = [f"{sum(servers[name]['us_per_request'].values()):.0f}" for name in names]
        lines.append("| **all sampled time** | " + " | ".join(totals) + " |")
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", action="append", required=True, metavar="NAME=SOURCE")
    parser.add_argument("--describe", default="", help="what the profile is for, for the report")
    parser.add_argument("--models", nargs="+", choices=[c.name for c in CONFIGURATIONS], default=["digits"])
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=int, default=10, help="seconds sampled per server")
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--home", type=Path, help="MLOPS_HOME to keep trained models in (shared with the A/B tool)")
    parser.add_argument("--results", type=Path, default=readme_sections.RESULTS)
    args = parser.parse_args()
    args.variants = dict(value.split("=", 1) for value in args.variant)
    report = run(args)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "serving_profile.json").write_text(json.dumps(report, indent=1))
    (args.results / "serving_profile.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
