"""A stage's main URL: a small reverse proxy that splits traffic between revisions by percent and serves each
revision's pinned URL (`/<revision>/...`), reloading its routes file without dropping connections.

Run as its own process: `python -m mlops_assets.lib.deploy.router --host H --port P --routes FILE`. The routes file
is JSON, `{"traffic": [{"revision": "v3", "upstream": "http://127.0.0.1:41001", "percent": 100}],
"tags": {"v3": "http://127.0.0.1:41001"}}`, replaced atomically by `write_routes`; the router reads it again when it
changes (checked on every request). A request finishes on the upstream it started on, so a switch only has to wait
until `GET /-/routes` shows no request in flight on the old upstream before stopping it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from mlops_assets.lib.atomic import atomic_write_text
from mlops_assets.lib.deploy.supervisor import ServerProcess, spawn, wait_ready

# Headers that describe one connection, never forwarded (RFC 9110, section 7.6.1).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}
# A request whose upstream refused the connection (it was stopped as the routes changed) is sent again, at most this
# many times: nothing of it reached the upstream, so sending it again is safe.
CONNECT_RETRIES = 3
UPSTREAM_TIMEOUT_S = 120.0


def write_routes(path: Path, traffic: Sequence[Mapping[str, Any]], tags: Mapping[str, str]) -> None:
    """Replace the routes file atomically: `traffic` entries `{"revision", "upstream", "percent"}` (percents sum to
    100 unless empty), `tags` revision -> upstream URL. Raises ValueError for percents that do not sum to 100."""
    total = sum(int(entry["percent"]) for entry in traffic)
    if traffic and total != 100:
        raise ValueError(f"Traffic percents sum to {total}; they must sum to 100.")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"traffic": list(traffic), "tags": dict(tags)}, indent=1))


class RouteTable:
    """The routes file as last read, read again whenever the file was replaced."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self.traffic: list[dict[str, Any]] = []
        self.tags: dict[str, str] = {}

    def refresh(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return  # keep the last table: a missing file never empties a serving router
        stamp = (stat.st_ino, stat.st_mtime_ns)
        if stamp == self._stamp:
            return
        document = json.loads(self.path.read_text())
        self.traffic = [entry for entry in document.get("traffic", []) if int(entry["percent"]) > 0]
        self.tags = dict(document.get("tags", {}))
        self._stamp = stamp

    def pick(self, path: str) -> tuple[str | None, str]:
        """The upstream for a request path and the path to send it to: a pinned `/<tag>/...` path goes to that tag
        with the prefix stripped; anything else is split by percent. (None, path) when nothing serves it."""
        first, _, rest = path.lstrip("/").partition("/")
        if first in self.tags:
            return self.tags[first], "/" + rest
        if not self.traffic:
            return None, path
        entry = random.choices(self.traffic, weights=[int(e["percent"]) for e in self.traffic])[0]
        return entry["upstream"], path


def create_app(routes_file: Path):
    """The router's ASGI app."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    table = RouteTable(routes_file)
    in_flight: Counter[str] = Counter()
    client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT_S, limits=httpx.Limits(max_connections=None))

    async def routes(_: Request) -> Response:
        table.refresh()
        return JSONResponse(
            {"traffic": table.traffic, "tags": table.tags, "in_flight": {k: v for k, v in in_flight.items() if v}}
        )

    async def proxy(request: Request) -> Response:
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP]
        for _attempt in range(CONNECT_RETRIES + 1):
            table.refresh()
            upstream, path = table.pick(request.url.path)
            if upstream is None:
                return JSONResponse(
                    {"error": f"Nothing is deployed at {request.url.path}; deploy a version with `mlops deploy`."},
                    status_code=404 if request.url.path.strip("/") else 503,
                )
            url = upstream + path + (f"?{request.url.query}" if request.url.query else "")
            in_flight[upstream] += 1
            try:
                answer = await client.request(request.method, url, content=body, headers=headers)
            except httpx.ConnectError:
                continue  # the upstream is gone (stopped after a switch): the table has moved on, try again
            except httpx.TransportError as error:
                return JSONResponse({"error": f"The upstream {upstream} failed: {error}; retry."}, status_code=502)
            finally:
                in_flight[upstream] -= 1
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP | {"content-encoding"}}
            return Response(answer.content, status_code=answer.status_code, headers=kept)
        return JSONResponse({"error": f"The upstream {upstream} refused the connection; retry."}, status_code=502)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(
        routes=[Route("/-/routes", routes, methods=["GET"]), Route("/{path:path}", proxy, methods=methods)],
        lifespan=lifespan,
    )


def start_router(
    host: str, port: int, routes_file: Path, log_path: Path, env: Mapping[str, str] | None = None
) -> ServerProcess:
    """Start the router process for `routes_file` on `host:port` in its own process group and wait until it
    answers; raises DeploymentError (with its log) when it does not."""
    command = [sys.executable, "-m", "mlops_assets.lib.deploy.router", "--host", host, "--port", str(port)]
    command += ["--routes", str(routes_file)]
    server, _ = spawn(command, host, port, log_path, env if env is not None else os.environ, "")
    wait_ready(server, 30, path="/-/routes")
    return server


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--routes", type=Path, required=True)
    args = parser.parse_args(argv)
    import uvicorn

    # Graceful shutdown lets requests in flight finish before the process exits.
    uvicorn.run(create_app(args.routes), host=args.host, port=args.port, access_log=False, timeout_graceful_shutdown=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
