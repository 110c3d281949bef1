"""Serving benchmark, one run: our BentoML service (a), BentoML with a separate `batchable=True` inference process
(a2, the design (a) replaced), a naive Starlette server (b) and in-process forward passes (c).

    .venv/bin/python benchmarks/bench_serving.py [--duration 6]

Two model configurations, measured the same way one after the other: `digits`, the reference CNN on the 8x8
sample digits (a ~50 us forward pass, so HTTP and decoding dominate), and `rgb32`, the same plug-in on generated
32x32 RGB images, whose forward pass costs about what the issue's calibration model did in-process.

Needs `wrk` (a compiled HTTP load generator): `sudo apt-get install -y wrk`, or `make bench`, which installs it.
Writes benchmarks/results/serving.json and serving.md.
"""

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONCURRENCY = (1, 16, 64)
BATCH_IMAGES = 64
BATCH_CONCURRENCY = 4
# Each 64-image run is paired with a (c) measurement taken just before it, and the ratio is the median of the
# pairs: on a shared machine the forward rate alone drifts by +-20 % within minutes, so a (c) measured once, minutes
# away from the server runs, made the ratio mostly a measure of that drift.
BATCH_RUNS = 3
IDLE_AFTER_FORWARD_S = 0.5
CPUS = os.cpu_count() or 1
BOUNDARY = "benchmarkboundary7f3a"
# The targets on CPU, checked for every configuration.
BATCH_SHARE_TARGET = 0.7
P99_SHARE_TARGET = 0.5


@dataclasses.dataclass(frozen=True)
class Configuration:
    """One model to serve: what it is trained on and how big it is."""

    name: str
    description: str
    params: dict
    epochs: int


# The issue calibrated its targets on a small CNN whose forward passes ran ~2,800 images/s in-process on a 2-core
# machine; width 20 on 32x32 RGB lands there (width 12, used before, ran 2-3x faster than the calibration model).
CONFIGURATIONS = (
    Configuration("digits", "8x8 greyscale sample digits, cnn width 32 (the reference model)", {}, 3),
    Configuration(
        "rgb32",
        "32x32 RGB generated images, cnn width 20 (about the issue's calibration model: ~2,800 images/s in-process)",
        {"width": 20},
        2,
    ),
)
RGB32_IMAGES = 600
SERVER_LABELS = (
    ("bentoml", "(a) our BentoML service"),
    ("dependency", "(a2) BentoML, batchable=True inference process"),
    ("naive", "(b) naive Starlette"),
)


def require_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed: run `sudo apt-get install -y wrk` (or `make bench`, which installs it).")
    return wrk


def multipart_body(images: list[bytes]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(images)
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def lua_script(path: Path, body: bytes) -> Path:
    """wrk posts the same multipart body on every request; bytes are written as Lua decimal escapes."""
    escaped = "".join(f"\\{byte}" for byte in body)
    path.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={BOUNDARY}"\n'
        f'wrk.body = "{escaped}"\n'
    )
    return path


def run_wrk(wrk: str, url: str, concurrency: int, duration_s: float, script: Path | None) -> dict:
    threads = min(concurrency, 2)
    command = [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(concurrency),
        "-d",
        f"{round(duration_s)}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run([*command, url], capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return {
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": _latency_ms(output, "50%"),
        "p99_ms": _latency_ms(output, "99%"),
        "requests": requests,
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(int(v) for v in socket_errors.groups()) if socket_errors else 0),
    }


def _latency_ms(output: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(percentile)}\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wait_ready(url: str, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s")


def forward_rate(model, inputs: np.ndarray, batch: int, threads: int, duration_s: float, start_at: float = 0) -> float:
    """Images/s of forward passes alone, at `batch` images per pass, with `threads` torch threads."""
    from mlops_assets.lib.serving.inference_runtime import configure_cpu_threads, inference_context

    configure_cpu_threads(threads)
    chunk = np.ascontiguousarray(np.resize(inputs, (batch, *inputs.shape[1:])))
    model.predict_proba(chunk)  # warm-up: first-call allocations are not serving cost
    time.sleep(max(0.0, start_at - time.time()))
    images, started = 0, time.perf_counter()
    with inference_context(model.plugin.device):
        while time.perf_counter() - started < duration_s:
            model.predict_proba(chunk)
            images += batch
    return images / (time.perf_counter() - started)


_POOL_MODEL = None


def _load_pool_model(model_dir: str) -> None:
    global _POOL_MODEL
    from mlops_assets.lib.models.model_package import load_package

    _POOL_MODEL = load_package(Path(model_dir), device="auto")


def _pool_forward_rate(inputs: np.ndarray, batch: int, duration_s: float, start_at: float) -> float:
    return forward_rate(_POOL_MODEL, inputs, batch, 1, duration_s, start_at)


class InProcessLimit:
    """(c): forward passes alone on preprocessed inputs, in the most productive layout this machine offers.

    Three layouts are measured: one process with 1 torch thread, one process with a thread per core, and one
    single-threaded process per core running at the same time (how the service's workers use the cores). The
    fastest counts, so the service is compared with the most the model can do here. The per-core processes load the
    model once and wait idle between measurements.
    """

    def __init__(self, model, model_dir: Path, inputs: np.ndarray, serving_threads: int) -> None:
        import multiprocessing

        self.model, self.inputs, self.serving_threads = model, inputs, serving_threads
        self.pool = (
            multiprocessing.get_context("spawn").Pool(CPUS, initializer=_load_pool_model, initargs=(str(model_dir),))
            if CPUS > 1
            else None
        )

    def measure(self, batch: int, duration_s: float) -> dict:
        from mlops_assets.lib.serving.inference_runtime import configure_cpu_threads

        rates = {"1 process x 1 thread": forward_rate(self.model, self.inputs, batch, 1, duration_s)}
        if self.pool is not None:
            rates[f"1 process x {CPUS} threads"] = forward_rate(self.model, self.inputs, batch, CPUS, duration_s)
            # The same start time for every process, a moment ahead, so they all compute over the same interval.
            start_at = time.time() + 0.5
            task = (self.inputs, batch, duration_s, start_at)
            rates[f"{CPUS} processes x 1 thread"] = sum(self.pool.starmap(_pool_forward_rate, [task] * CPUS))
        # Back to the serving thread budget, and time for idle torch threads to stop spinning on the cores the next
        # measurement needs.
        configure_cpu_threads(self.serving_threads)
        time.sleep(IDLE_AFTER_FORWARD_S)
        best = max(rates, key=rates.get)
        return {"images_per_s": rates[best], "layout": best, "by_layout": rates}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def build_model(home: Path, config: Configuration) -> tuple[dict[str, str], Path, list[bytes], dict]:
    """Train the CNN briefly on the configuration's data, store it and build both bentos: ours (serving config
    defaults) and the two-process alternative in benchmarks/dependency_service/."""
    from mlops_assets import settings

    settings.export_environment()
    from benchmarks.synthetic_images import generate_dataset
    from mlops_assets.lib.data.manifest import scan_dataset
    from mlops_assets.lib.data.sample_data import export_digits
    from mlops_assets.lib.data.validated_data import GeometryConfig, build_validated_dataset
    from mlops_assets.lib.models.plugins.base import TrainSettings
    from mlops_assets.lib.models.training import train_model
    from mlops_assets.packaging import build_service_bento, serving_arguments, store_model

    work = home / config.name
    if config.name == "digits":
        raw = export_digits(work / "raw", per_class_limit=60)
    else:
        raw = generate_dataset(work / "raw", RGB32_IMAGES, side=32, channels=3)
    manifest = scan_dataset(raw)
    data = build_validated_dataset(manifest, GeometryConfig(), work / "validated")
    trained = train_model(
        data, "cnn", config.params, TrainSettings(epochs=config.epochs, device="auto"), work / "model"
    )
    tag = store_model(
        Path(trained.directory), "image-classifier", trained.weights_sha256[:20], {}, {"benchmark": config.name}
    )
    serving = serving_arguments()
    bento, _ = build_service_bento(tag, labels={"purpose": "benchmark"}, serving=serving)
    import bentoml

    dependency = bentoml.bentos.build_bentofile(
        str(ROOT / "benchmarks" / "dependency_service" / "bentofile.yaml"),
        build_ctx=str(ROOT),
        args={
            "model_tag": tag,
            "max_batch_size": serving["max_batch_size"],
            "max_latency_ms": serving["max_latency_ms"],
        },
    )
    images = [manifest.absolute_path(entry).read_bytes() for entry in manifest.entries if entry.split == "test"]
    return {"bentoml": bento.bento_tag, "dependency": str(dependency.tag)}, Path(trained.directory), images, serving


def start_naive(model_dir: Path) -> tuple[subprocess.Popen, str, float]:
    from mlops_assets_tests.conftest import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.naive_server:app", "--port", str(port), "--log-level",
         "warning", "--no-access-log"],
        cwd=ROOT, env={**os.environ, "NAIVE_MODEL_DIR": str(model_dir)}, start_new_session=True,
    )  # fmt: skip
    started = time.monotonic()
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping")
    except BaseException:
        stop_naive(process)
        raise
    return process, f"http://127.0.0.1:{port}", time.monotonic() - started


def stop_naive(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    process.wait(timeout=30)


def measure(wrk: str, config: Configuration, home: Path, duration: int, with_ceiling: bool) -> dict:
    """(a), (b) and (c) for one configuration; returns its report section.

    With `with_ceiling`, first the generator's own ceiling: wrk against the naive server's trivial endpoint.
    """
    from mlops_assets.lib.data.preprocessing import preprocess_bytes
    from mlops_assets.lib.models.model_package import load_package

    bento_tags, model_dir, images, serving = build_model(home, config)
    model = load_package(model_dir, device="auto")
    inputs = np.stack([preprocess_bytes(d, model.spec) for d in images])
    single = lua_script(home / f"{config.name}-single.lua", multipart_body(images[:1]))
    batch_body = multipart_body((images * BATCH_IMAGES)[:BATCH_IMAGES])
    batch = lua_script(home / f"{config.name}-batch.lua", batch_body)
    with contextlib.closing(InProcessLimit(model, model_dir, inputs, int(serving.get("torch_threads", 1)))) as forward:
        limit_1 = forward.measure(1, duration / 2)
        servers, ready_s, ceiling = run_servers(
            wrk,
            bento_tags,
            model_dir,
            duration,
            single,
            batch,
            with_ceiling,
            lambda: forward.measure(BATCH_IMAGES, duration / 2),
        )
    paired_limits = [rate for result in servers.values() for rate in result["batch64"]["paired_c_images_per_s"]]
    limit = {
        "batch_1_images_per_s": limit_1["images_per_s"],
        "batch_1_layout": limit_1["layout"],
        "batch_1_by_layout": limit_1["by_layout"],
        "batch_64_images_per_s": statistics.median(paired_limits),
        "batch_64_runs_images_per_s": paired_limits,
        "batch_64_layout": statistics.mode(t for r in servers.values() for t in r["batch64"]["paired_c_layouts"]),
    }
    a, b = servers["bentoml"], servers["naive"]
    ratios = {
        **{
            f"a_over_b_throughput_c{c}": a[f"c{c}"]["requests_per_s"] / b[f"c{c}"]["requests_per_s"]
            for c in CONCURRENCY
        },
        "a_over_b_p99_c64": a["c64"]["p99_ms"] / b["c64"]["p99_ms"],
        "a_batch64_over_c": a["batch64"]["over_c"],
        "b_batch64_over_c": b["batch64"]["over_c"],
        "a_over_dependency_throughput_c64": a["c64"]["requests_per_s"] / servers["dependency"]["c64"]["requests_per_s"],
        "dependency_over_b_throughput_c64": servers["dependency"]["c64"]["requests_per_s"] / b["c64"]["requests_per_s"],
    }
    return {
        "load_generator_ceiling": ceiling,
        "description": config.description,
        "input": {
            "shape": list(model.spec.input_shape),
            "png_bytes_mean": round(float(np.mean([len(d) for d in images]))),
        },
        "batch64_body_bytes": len(batch_body),
        "time_to_ready_s": ready_s,
        "in_process_limit": limit,
        "servers": servers,
        "ratios": ratios,
        "targets": {
            "c64 throughput at least (b)'s": ratios["a_over_b_throughput_c64"] >= 1.0,
            f"c64 p99 at most {P99_SHARE_TARGET:.0%} of (b)'s": ratios["a_over_b_p99_c64"] <= P99_SHARE_TARGET,
            f"64-image batches at least {BATCH_SHARE_TARGET:.0%} of (c)": ratios["a_batch64_over_c"]
            >= BATCH_SHARE_TARGET,
        },
    }


def run_servers(
    wrk: str,
    bento_tags: dict[str, str],
    model_dir: Path,
    duration: int,
    single: Path,
    batch: Path,
    with_ceiling: bool,
    limit_64: Callable[[], dict],
) -> tuple[dict[str, dict], dict[str, float], dict | None]:
    """Loads (a), (a2) and (b) one after the other; returns their results, times to ready and the wrk ceiling."""
    from mlops_assets.resources.local_deployer import deploy_local, stop_local
    from mlops_assets_tests.conftest import free_port

    servers: dict[str, dict] = {}
    naive, naive_url, naive_ready_s = start_naive(model_dir)
    try:
        ceiling = run_wrk(wrk, f"{naive_url}/ping", 64, duration, None) if with_ceiling else None
        ready_s = {"naive": round(naive_ready_s, 2)}
        for name in ("bentoml", "dependency"):
            started = time.monotonic()
            server = deploy_local(bento_tags[name], port=free_port())
            ready_s[name] = round(time.monotonic() - started, 2)
            try:
                servers[name] = load_server(wrk, f"{server.url}/predict", duration, single, batch, limit_64)
            finally:
                stop_local()
        servers["naive"] = load_server(wrk, f"{naive_url}/predict", duration, single, batch, limit_64)
    finally:
        stop_naive(naive)
    return servers, ready_s, ceiling


def load_server(wrk: str, url: str, duration: int, single: Path, batch: Path, limit_64) -> dict:
    """Single-image requests at each concurrency, then 64-image requests, each run right after a (c) measurement."""
    results = {f"c{c}": run_wrk(wrk, url, c, duration, single) for c in CONCURRENCY}
    pairs = []
    for _ in range(BATCH_RUNS):
        limit = limit_64()
        run = run_wrk(wrk, url, BATCH_CONCURRENCY, duration, batch)
        pairs.append((run, limit))
    # The run with the median rate is the one shown; the ratio to (c) is the median of the paired ratios.
    median_run, _ = sorted(pairs, key=lambda pair: pair[0]["requests_per_s"])[len(pairs) // 2]
    ratios = [run["requests_per_s"] * BATCH_IMAGES / limit["images_per_s"] for run, limit in pairs]
    results["batch64"] = {
        **median_run,
        "images_per_s": median_run["requests_per_s"] * BATCH_IMAGES,
        "runs_requests_per_s": [run["requests_per_s"] for run, _ in pairs],
        "paired_c_images_per_s": [limit["images_per_s"] for _, limit in pairs],
        "paired_c_layouts": [limit["layout"] for _, limit in pairs],
        "over_c_runs": ratios,
        "over_c": statistics.median(ratios),
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    args = parser.parse_args()
    wrk = require_wrk()
    home = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    os.environ["MLOPS_HOME"] = str(home)
    os.environ.pop("MLOPS_API_KEY", None)
    sys.path.insert(0, str(ROOT))
    load_before = os.getloadavg()[0]
    configurations = {
        config.name: measure(wrk, config, home, args.duration, with_ceiling=index == 0)
        for index, config in enumerate(CONFIGURATIONS)
    }
    ceiling = [section.pop("load_generator_ceiling") for section in configurations.values()][0]
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    report = {
        "machine": {"cpus": CPUS, "platform": platform.platform(), "device": device},
        "note": f"{CPUS} CPU cores shared by the servers, wrk and other work"
        f" (1-minute load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after); "
        + ("CPU only, no GPU was available for this run." if device == "cpu" else f"device {device}."),
        "duration_s_per_run": args.duration,
        "load_generator_ceiling": ceiling,
        "configurations": configurations,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "serving.md").write_text(markdown(report))
    print(markdown(report))
    shutil.rmtree(home, ignore_errors=True)


def markdown(report: dict) -> str:
    configurations = report["configurations"]
    lines = [
        "# Serving benchmark",
        "",
        f"{report['note']} Each wrk run lasts {report['duration_s_per_run']} s; single-image multipart requests"
        f" unless noted. Load generator ceiling (wrk against a trivial endpoint, 64 connections):"
        f" {report['load_generator_ceiling']['requests_per_s']:.0f} req/s.",
        "",
        "| | " + " | ".join(f"`{name}`" for name in configurations) + " |",
        "| --- |" + " ---: |" * len(configurations),
    ]
    rows = {
        "model": lambda c: c["description"],
        "(c) in-process, batch 64, images/s": lambda c: (
            f"{c['in_process_limit']['batch_64_images_per_s']:.0f}"
            f" (median of {len(c['in_process_limit']['batch_64_runs_images_per_s'])} runs;"
            f" fastest in most: {c['in_process_limit']['batch_64_layout']})"
        ),
        "(a) 64-image batches, images/s": lambda c: f"{c['servers']['bentoml']['batch64']['images_per_s']:.0f}",
        "(a) / (c), 64-image batches (median of paired runs)": lambda c: f"{c['ratios']['a_batch64_over_c']:.2f}",
        "(a) / (b) throughput, concurrency 64": lambda c: f"{c['ratios']['a_over_b_throughput_c64']:.2f}",
        "(a) / (b) p99, concurrency 64": lambda c: f"{c['ratios']['a_over_b_p99_c64']:.2f}",
        "(a) / (a2) throughput, concurrency 64": lambda c: f"{c['ratios']['a_over_dependency_throughput_c64']:.2f}",
        **{
            f"target: {target}": (lambda c, target=target: "met" if c["targets"][target] else "**not met**")
            for target in next(iter(configurations.values()))["targets"]
        },
    }
    lines += [f"| {row} | " + " | ".join(cell(c) for c in configurations.values()) + " |" for row, cell in rows.items()]
    for name, section in configurations.items():
        lines += [
            "",
            f"## `{name}`: {section['description']}",
            "",
            f"Input {'x'.join(map(str, section['input']['shape']))}, PNGs of {section['input']['png_bytes_mean']} bytes"
            f" on average; a 64-image request body is {section['batch64_body_bytes']:,} bytes.",
            "",
            "| server | load | req/s | images/s | p50 ms | p99 ms | errors |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for server, label in SERVER_LABELS:
            for load, result in section["servers"][server].items():
                per_request = BATCH_IMAGES if load == "batch64" else 1
                load_text = (
                    f"64-image batches, concurrency {BATCH_CONCURRENCY} (median of"
                    f" {', '.join(f'{rate:.0f}' for rate in result['runs_requests_per_s'])} req/s; over the (c)"
                    f" measured just before each: {', '.join(f'{ratio:.2f}' for ratio in result['over_c_runs'])})"
                    if load == "batch64"
                    else f"concurrency {load[1:]}"
                )
                lines.append(
                    f"| {label} | {load_text} | {result['requests_per_s']:.0f}"
                    f" | {result['requests_per_s'] * per_request:.0f} | {result['p50_ms']:.1f}"
                    f" | {result['p99_ms']:.1f} | {result['errors']} |"
                )
        limit = section["in_process_limit"]
        lines += [
            f"| (c) in-process forward passes, {limit['batch_1_layout']} | batch 1 | |"
            f" {limit['batch_1_images_per_s']:.0f} | | | |",
            f"| (c) in-process forward passes, measured before each 64-image run above | batch 64, median of"
            f" {', '.join(f'{rate:.0f}' for rate in limit['batch_64_runs_images_per_s'])} images/s | |"
            f" {limit['batch_64_images_per_s']:.0f} | | | |",
        ]
        lines += [
            "",
            "| ratio | value |",
            "| --- | ---: |",
            *(f"| {key} | {value:.2f} |" for key, value in section["ratios"].items()),
            "",
            "Time from process start to ready: "
            + ", ".join(f"{label} {section['time_to_ready_s'][name]} s" for name, label in SERVER_LABELS)
            + " (`/readyz` for the BentoML servers, `/ping` for the naive one).",
        ]
    return "\n".join([*lines, ""])


if __name__ == "__main__":
    main()
