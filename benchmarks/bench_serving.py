"""Serving benchmark: our BentoML service vs a naive Starlette server vs in-process forward passes, one run.

    .venv/bin/python benchmarks/bench_serving.py [--duration 8]

Needs `wrk` (a compiled HTTP load generator): `sudo apt-get install -y wrk`, or `make bench`, which installs it.
Writes benchmarks/results/serving.json and serving.md.
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONCURRENCY = (1, 16, 64)
BATCH_IMAGES = 64
BATCH_CONCURRENCY = 4
BOUNDARY = "benchmarkboundary7f3a"


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


def in_process_limit(model, inputs: np.ndarray, duration_s: float) -> dict:
    """Images/s of forward passes alone on already preprocessed inputs, at batch 1 and batch 64."""
    from mlops_assets.lib.inference_runtime import inference_context

    results = {}
    for batch in (1, BATCH_IMAGES):
        chunk = np.ascontiguousarray(np.resize(inputs, (batch, *inputs.shape[1:])))
        model.predict_proba(chunk)  # warm-up: first-call allocations are not serving cost
        images, started = 0, time.perf_counter()
        with inference_context(model.plugin.device):
            while time.perf_counter() - started < duration_s:
                model.predict_proba(chunk)
                images += batch
        results[f"batch_{batch}_images_per_s"] = images / (time.perf_counter() - started)
    return results


def build_model(home: Path) -> tuple[str, Path, list[bytes], dict]:
    """Train the reference CNN briefly on the sample digits, store it and build the bento (serving config defaults)."""
    from mlops_assets import settings

    settings.export_environment()
    from mlops_assets.lib.manifest import scan_dataset
    from mlops_assets.lib.plugins.base import TrainSettings
    from mlops_assets.lib.sample_data import export_digits
    from mlops_assets.lib.training import train_model
    from mlops_assets.lib.validated_data import GeometryConfig, build_validated_dataset
    from mlops_assets.packaging import build_service_bento, serving_arguments, store_model

    manifest = scan_dataset(export_digits(home / "digits", per_class_limit=60))
    data = build_validated_dataset(manifest, GeometryConfig(), home / "validated")
    trained = train_model(data, "cnn", {}, TrainSettings(epochs=3, device="auto"), home / "model")
    tag = store_model(Path(trained.directory), "image-classifier", trained.weights_sha256[:20], {}, {"benchmark": True})
    serving = serving_arguments()
    bento, _ = build_service_bento(tag, labels={"purpose": "benchmark"}, serving=serving)
    images = [manifest.absolute_path(entry).read_bytes() for entry in manifest.entries if entry.split == "test"]
    return bento.bento_tag, Path(trained.directory), images, serving


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    args = parser.parse_args()
    wrk = require_wrk()
    home = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    os.environ["MLOPS_HOME"] = str(home)
    os.environ.pop("MLOPS_API_KEY", None)
    sys.path.insert(0, str(ROOT))
    bento_tag, model_dir, images, serving = build_model(home)

    from mlops_assets.lib.inference_runtime import configure_cpu_threads
    from mlops_assets.lib.model_package import load_package
    from mlops_assets.lib.preprocessing import preprocess_bytes
    from mlops_assets.resources.local_deployer import deploy_local, stop_local
    from mlops_assets_tests.conftest import free_port

    # The same thread budget the service's inference process gets.
    configure_cpu_threads(int(serving.get("torch_threads", 1)))
    model = load_package(model_dir, device="auto")
    limit = in_process_limit(model, np.stack([preprocess_bytes(d, model.spec) for d in images]), args.duration / 2)
    single = lua_script(home / "single.lua", multipart_body(images[:1]))
    batch = lua_script(home / "batch.lua", multipart_body((images * BATCH_IMAGES)[:BATCH_IMAGES]))

    servers: dict[str, dict] = {}
    naive_port = free_port()
    naive = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.naive_server:app", "--port", str(naive_port), "--log-level",
         "warning", "--no-access-log"],
        cwd=ROOT, env={**os.environ, "NAIVE_MODEL_DIR": str(model_dir)}, start_new_session=True,
    )  # fmt: skip
    started = time.monotonic()
    try:
        wait_ready(f"http://127.0.0.1:{naive_port}/ping")
        naive_ready_s = time.monotonic() - started
        ceiling = run_wrk(wrk, f"http://127.0.0.1:{naive_port}/ping", 64, args.duration, None)
        started = time.monotonic()
        ours = deploy_local(bento_tag, port=free_port())
        ours_ready_s = time.monotonic() - started
        try:
            for name, url in (("bentoml", f"{ours.url}/predict"), ("naive", f"http://127.0.0.1:{naive_port}/predict")):
                servers[name] = {f"c{c}": run_wrk(wrk, url, c, args.duration, single) for c in CONCURRENCY}
                servers[name]["batch64"] = run_wrk(wrk, url, BATCH_CONCURRENCY, args.duration, batch)
                servers[name]["batch64"]["images_per_s"] = servers[name]["batch64"]["requests_per_s"] * BATCH_IMAGES
        finally:
            stop_local()
    finally:
        os.killpg(naive.pid, 15)
        naive.wait(timeout=30)
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "device": model.plugin.device},
        "note": f"{os.cpu_count()} CPU cores shared by the servers, wrk and other work; "
        + ("no GPU was available for this run." if model.plugin.device == "cpu" else f"device {model.plugin.device}."),
        "serving_settings": serving,
        "duration_s_per_run": args.duration,
        "load_generator_ceiling": ceiling,
        "time_to_ready_s": {"bentoml": round(ours_ready_s, 2), "naive": round(naive_ready_s, 2)},
        "in_process_limit": limit,
        "servers": servers,
        "ratios": {
            **{
                f"a_over_b_throughput_c{c}": servers["bentoml"][f"c{c}"]["requests_per_s"]
                / servers["naive"][f"c{c}"]["requests_per_s"]
                for c in CONCURRENCY
            },
            "a_over_b_p99_c64": servers["bentoml"]["c64"]["p99_ms"] / servers["naive"]["c64"]["p99_ms"],
            "a_batch64_over_c": servers["bentoml"]["batch64"]["images_per_s"] / limit["batch_64_images_per_s"],
            "b_batch64_over_c": servers["naive"]["batch64"]["images_per_s"] / limit["batch_64_images_per_s"],
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serving.json").write_text(json.dumps(report, indent=1))
    (RESULTS / "serving.md").write_text(markdown(report))
    print(markdown(report))
    shutil.rmtree(home, ignore_errors=True)


def markdown(report: dict) -> str:
    lines = [
        "# Serving benchmark",
        "",
        f"{report['note']} Each wrk run lasts {report['duration_s_per_run']} s; single-image multipart requests"
        f" unless noted. Load generator ceiling (wrk against a trivial endpoint, 64 connections):"
        f" {report['load_generator_ceiling']['requests_per_s']:.0f} req/s.",
        "",
        "| server | load | req/s | images/s | p50 ms | p99 ms | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, label in (("bentoml", "(a) our BentoML service"), ("naive", "(b) naive Starlette")):
        for load, result in report["servers"][name].items():
            per_request = BATCH_IMAGES if load == "batch64" else 1
            load_text = (
                f"64-image batches, concurrency {BATCH_CONCURRENCY}" if load == "batch64" else f"concurrency {load[1:]}"
            )
            lines.append(
                f"| {label} | {load_text} | {result['requests_per_s']:.0f}"
                f" | {result['requests_per_s'] * per_request:.0f} | {result['p50_ms']:.1f}"
                f" | {result['p99_ms']:.1f} | {result['errors']} |"
            )
    limit = report["in_process_limit"]
    lines += [
        f"| (c) in-process forward passes | batch 1 | | {limit['batch_1_images_per_s']:.0f} | | | |",
        f"| (c) in-process forward passes | batch 64 | | {limit['batch_64_images_per_s']:.0f} | | | |",
        "",
        "| ratio | value |",
        "| --- | ---: |",
        *(f"| {key} | {value:.2f} |" for key, value in report["ratios"].items()),
        "",
        f"Time from process start to ready: BentoML {report['time_to_ready_s']['bentoml']} s (`/readyz`),"
        f" naive {report['time_to_ready_s']['naive']} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
