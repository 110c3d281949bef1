"""The driver `profile_request_path.py` runs in a process of its own: one server's ASGI app, driven in-process.

    python benchmarks/request_path_driver.py SPEC.json   # then commands on stdin: untimed | timed | quit

For the service it starts BentoML's worker entry point with the command line of a real worker (SPEC's
`worker_argv`), uvicorn's server loop replaced by the driver; run it in the variant's tree with the tree first on
PYTHONPATH, so the variant's code is what runs. Nothing of the project is imported here before the worker loads it.
For the naive server (SPEC's `server` "naive") it drives `benchmarks.naive_server:app` behind uvicorn's proxy-headers
middleware, as uvicorn serves it.
"""

import asyncio
import importlib
import json
import os
import sys
import time
from pathlib import Path

BOUNDARY = "benchmarkboundary7f3a"  # the multipart boundary of the benchmark's request bodies (bench_serving.py)
NAIVE = "naive"
# Requests answered before measuring: first-request costs, and the hard-case capture's daily bound (1000 per worker)
# passed, as in any benchmark run longer than a few seconds.
WARM_UP_REQUESTS = 1500
# (layer, its parent layer, "module:attribute" of the function timed). A layer's own time is its time less its
# children's. Async functions are timed across their awaits: with one request at a time nothing else runs meanwhile.
SERVICE_LAYERS = (
    ("Starlette app", None, "starlette.applications:Starlette.__call__"),
    ("ServerErrorMiddleware", "Starlette app", "starlette.middleware.errors:ServerErrorMiddleware.__call__"),
    (
        "BentoML traffic metrics",
        "ServerErrorMiddleware",
        "bentoml._internal.server.http.instruments:RunnerTrafficMetricsMiddleware.__call__",
    ),
    (
        "OpenTelemetry (tracing off)",
        "BentoML traffic metrics",
        "opentelemetry.instrumentation.asgi:OpenTelemetryMiddleware.__call__",
    ),
    (
        "request timeout",
        "OpenTelemetry (tracing off)",
        "bentoml._internal.server.http.traffic:TimeoutMiddleware.__call__",
    ),
    ("error shape", "request timeout", "mlops_assets.lib.serving.error_responses:ErrorShape.__call__"),
    ("request guard", "error shape", "mlops_assets.lib.serving.request_guard:RequestGuard.__call__"),
    ("guard: body read and multipart parse", "request guard", "mlops_assets.lib.serving.request_guard:_read"),
    (
        "direct dispatch and the answer's sending",
        "request guard",
        "mlops_assets.lib.serving.direct_dispatch:DirectDispatch.__call__",
    ),
    (
        "classify: answer, metrics, logs",
        "direct dispatch and the answer's sending",
        "bento.service:ImageClassifier.inner._classify",
    ),
    ("decoding", "classify: answer, metrics, logs", "bento.service:ImageClassifier.inner._decode_all"),
    ("micro-batcher", "classify: answer, metrics, logs", "mlops_assets.lib.serving.micro_batcher:MicroBatcher.predict"),
    (
        "forward pass",
        "micro-batcher",
        "mlops_assets.lib.models.model_package:LoadedModel.predict_uint8_with_embedding",
    ),
)
NAIVE_LAYERS = (
    ("Starlette app", None, "starlette.applications:Starlette.__call__"),
    ("ServerErrorMiddleware", "Starlette app", "starlette.middleware.errors:ServerErrorMiddleware.__call__"),
    # Starlette's route holds the handler function itself, so the handler is timed with the routing around it.
    (
        "Starlette routing and the handler: form parse, answer",
        "ServerErrorMiddleware",
        "starlette.middleware.exceptions:ExceptionMiddleware.__call__",
    ),
    ("decoding", "Starlette routing and the handler: form parse, answer", "benchmarks.naive_server:preprocess_bytes"),
    (
        "forward pass",
        "Starlette routing and the handler: form parse, answer",
        "mlops_assets.lib.models.model_package:LoadedModel.predict_proba",
    ),
)


def _resolve(target: str) -> tuple[object, str] | None:
    """(owner, attribute) of "module:Class.function" or "module:function"; None where this tree has no such thing."""
    module_name, _, path = target.partition(":")
    try:
        owner: object = importlib.import_module(module_name)
    except ImportError:
        return None
    *owners, attribute = path.split(".")
    for name in owners:
        owner = getattr(owner, name, None)
    return (owner, attribute) if isinstance(owner, type | type(sys)) and attribute in vars(owner) else None


def _timed(function, totals: dict, layer: str):
    if asyncio.iscoroutinefunction(function):

        async def timed_coroutine(*args, **kwargs):
            started = time.thread_time_ns()
            try:
                return await function(*args, **kwargs)
            finally:
                totals[layer] = totals.get(layer, 0) + time.thread_time_ns() - started

        return timed_coroutine

    def timed(*args, **kwargs):
        started = time.thread_time_ns()
        try:
            return function(*args, **kwargs)
        finally:
            totals[layer] = totals.get(layer, 0) + time.thread_time_ns() - started

    return timed


def _request(body: bytes) -> tuple[dict, bytes]:
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 3000),
        "client": ("127.0.0.1", 50000),  # one client connection, as with wrk -c1
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "headers": headers,
    }
    return scope, body


async def _drive(app, layers, body: bytes, requests: int) -> None:
    """The app's lifespan started and warmed up, then one round per command read from stdin: `untimed` or `timed`
    answers `requests` requests and prints its CPU µs per request (`timed` also each layer's own time); `quit`
    ends. Each reply is one line starting with REPLY."""
    startup: asyncio.Queue = asyncio.Queue()
    started: list[dict] = []

    async def lifespan_receive() -> dict:
        return await startup.get()

    async def lifespan_send(message: dict) -> None:
        started.append(message)

    await startup.put({"type": "lifespan.startup"})
    lifespan = asyncio.ensure_future(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                         lifespan_receive, lifespan_send))  # fmt: skip
    while not started:
        if lifespan.done():
            lifespan.result()  # raises what the startup raised
        await asyncio.sleep(0.01)
    if started[0]["type"] != "lifespan.startup.complete":
        raise RuntimeError(f"the app did not start: {started[0]}")
    scope, body = _request(body)

    async def answer() -> None:
        sent: list[dict] = []
        delivered = False

        async def receive() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client stays connected
            return {}

        async def send(message: dict) -> None:
            sent.append(message)

        await app({**scope, "state": {}}, receive, send)
        if sent[0]["status"] != 200:
            raise RuntimeError(f"the app answered {sent[0]['status']}: {sent[-1].get('body', b'')[:300]!r}")

    for _ in range(WARM_UP_REQUESTS):
        await answer()
    totals: dict[str, int] = {}
    patches = []
    for layer, _, target in layers:
        found = _resolve(target)
        if found is not None:
            owner, attribute = found
            patches.append((owner, attribute, vars(owner)[attribute], _timed(vars(owner)[attribute], totals, layer)))
    _reply({"ready": True, "layers_missing": [layer for layer, _, target in layers if _resolve(target) is None]})
    # Blocking reads between rounds: nothing of the app's runs on the loop while it idles between requests.
    for command in iter(sys.stdin.readline, ""):
        command = command.strip()
        if command == "quit":
            return
        timing = command == "timed"
        totals.clear()
        for owner, attribute, original, wrapper in patches:
            setattr(owner, attribute, wrapper if timing else original)
        begun = time.thread_time()
        for _ in range(requests):
            await answer()
        reply = {"us_per_request": 1e6 * (time.thread_time() - begun) / requests}
        if timing:
            inclusive = {layer: ns / 1000 / requests for layer, ns in totals.items()}
            reply["layers_own_us"] = {
                layer: inclusive[layer]
                - sum(inclusive.get(child, 0.0) for child, parent, _ in layers if parent == layer)
                for layer, _, _ in layers
                if layer in inclusive
            }
        _reply(reply)


def _reply(message: dict) -> None:
    print("REPLY " + json.dumps(message), flush=True)


def _run(coroutine) -> None:
    """`coroutine` run on the event loop uvicorn serves both servers with: uvloop where it is installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
        return
    uvloop.run(coroutine)


def _driver_main(spec: dict) -> None:
    """In the driver process: start the app of spec["server"], then answer the commands read from stdin."""
    body = Path(spec["body"]).read_bytes()
    if spec["server"] == NAIVE:
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        from benchmarks.naive_server import app

        _run(_drive(ProxyHeadersMiddleware(app), NAIVE_LAYERS, body, spec["requests"]))
        return
    import socket

    import uvicorn

    def drive_instead_of_serving(server: uvicorn.Server, sockets=None) -> None:
        server.config.load()  # uvicorn's own wrapping of the app (proxy headers), as when it serves
        _run(_drive(server.config.loaded_app, SERVICE_LAYERS, body, spec["requests"]))
        os._exit(0)  # BentoML's worker would go on to its shutdown; nothing is left to measure

    uvicorn.Server.run = drive_instead_of_serving
    listener = socket.socket()  # BentoML's worker expects the server's listening socket as a file descriptor
    listener.bind(("127.0.0.1", 0))
    argv = list(spec["worker_argv"])
    argv[argv.index("--fd") + 1] = str(listener.fileno())
    from _bentoml_impl.worker.service import main

    main(argv, standalone_mode=False)


def main() -> None:
    _driver_main(json.loads(Path(sys.argv[1]).read_text()))


if __name__ == "__main__":
    main()
