"""A stand-in for the Cloud Run Admin API v2 on loopback that really serves what it is given.

It answers the REST calls the official client (`google.cloud.run_v2.ServicesClient(transport="rest")`) makes for
services (get, create, patch, delete) and long-running operations (get), and it behaves like Cloud Run where the
deployer depends on it:
- each new revision is started as a BentoML server of the bento named by its image (the last path segment,
  `name:version`, is the bento tag, as `bentoml containerize` tags images), with its environment variables and its
  secrets (from the secrets given to the stand-in, as Secret Manager would); it is ready once `/readyz` answers
  within the startup probe's budget (period x failure threshold);
- a revision that exits or never becomes ready is reported as Cloud Run does: the operation ends with an error, the
  service's terminal condition is failed with the reason, `latest_ready_revision` stays the previous one and
  traffic is not moved;
- the service URL is a router splitting traffic by the percentages it holds; each tag answers at `<url>/<tag>`;
- a revision no traffic target names any more is stopped (Cloud Run scales it to zero).
What it does not do: IAM, quotas, GPUs, images from a registry, regions, request-based billing, or any call the
deployer does not make.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import threading
import uuid
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, json_format, timestamp_pb2
from google.rpc import status_pb2

from mlops_assets.lib.deploy.release import DeploymentError
from mlops_assets.lib.deploy.router import start_router, write_routes
from mlops_assets.lib.deploy.supervisor import ServerProcess, free_port, start_server, stop_server, wait_ready

_SERVICES = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+)/services$")
_SERVICE = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/services/[^/:]+)$")
_OPERATION = re.compile(r"^/v2/(projects/[^/]+/locations/[^/]+/operations/[^/:]+)$")
CONDITION_READY = "Ready"
SUCCEEDED = run_v2.Condition.State.CONDITION_SUCCEEDED
FAILED = run_v2.Condition.State.CONDITION_FAILED
REVISION = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION
LATEST = run_v2.TrafficTargetAllocationType.TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST


class ApiError(Exception):
    """An error answered as Google APIs do: HTTP status and `{"error": {"code", "message", "status"}}`."""

    def __init__(self, status: HTTPStatus, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass
class RevisionState:
    name: str
    bento_tag: str
    server: ServerProcess | None = None
    ready: bool = False


@dataclass
class ServiceState:
    service: run_v2.Service
    router: ServerProcess
    routes_file: Path
    revisions: dict[str, RevisionState] = field(default_factory=dict)


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


def _pack(service: run_v2.Service) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(run_v2.Service.pb(service))
    return packed


class CloudRunStandIn:
    """The stand-in's state and behaviour; `start()` serves it on a free loopback port, `close()` stops everything
    it started (revision servers, routers, the API server)."""

    def __init__(self, home: Path, secrets: dict[str, str] | None = None) -> None:
        self.home = home
        self.secrets = dict(secrets or {})
        self.services: dict[str, ServiceState] = {}
        self.operations: dict[str, operations_pb2.Operation] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every call, for the tests to read
        self.traffic_sent: list[list[tuple[str, int]]] = []  # (tag, percent) of each update's traffic, in order
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._workers: list[threading.Thread] = []
        self._counter = itertools.count(1)

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> str:
        """Serve the API on loopback; returns its endpoint (`http://127.0.0.1:PORT`)."""
        standin = self

        class Handler(_Handler):
            pass

        Handler.standin = standin
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        for worker in list(self._workers):
            worker.join(timeout=600)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for state in list(self.services.values()):
            self._stop_all(state)
        self.services.clear()

    def wait_idle(self) -> None:
        """Block until no operation is in progress."""
        for worker in list(self._workers):
            worker.join(timeout=600)

    def _stop_all(self, state: ServiceState) -> None:
        for revision in state.revisions.values():
            if revision.server is not None:
                stop_server(revision.server)
                revision.server = None
        with contextlib.suppress(DeploymentError):
            stop_server(state.router)

    # -- the API ---------------------------------------------------------------------------------------------------

    def get_service(self, name: str) -> run_v2.Service:
        with self._lock:
            state = self.services.get(name)
            if state is None:
                raise ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"Resource '{name}' was not found")
            return run_v2.Service(state.service)

    def create_service(self, parent: str, service_id: str, body: run_v2.Service, validate_only: bool):
        name = f"{parent}/services/{service_id}"
        if body.name:
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "service.name must be empty on create")
        with self._lock:
            if name in self.services:
                raise ApiError(HTTPStatus.CONFLICT, "ALREADY_EXISTS", f"Resource '{name}' already exists.")
            body.name = name
            self._check(body, known=set())
            if validate_only:
                return self._operation(parent, body, done=True)
            port = free_port()
            routes_file = self.home / service_id / "routes.json"
            write_routes(routes_file, [], {})
            router = start_router("127.0.0.1", port, routes_file, self.home / service_id / "router.log")
            stored = run_v2.Service(body)
            stored.uri = router.url
            stored.generation = 1
            stored.create_time = _now()
            state = ServiceState(stored, router, routes_file)
            self.services[name] = state
            return self._reconcile(parent, state, stored)

    def update_service(self, body: run_v2.Service, validate_only: bool):
        with self._lock:
            state = self.services.get(body.name)
            if state is None:
                raise ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"Resource '{body.name}' was not found")
            self._check(body, known=set(state.revisions))
            if not validate_only:
                self.traffic_sent.append([(target.tag, target.percent) for target in body.traffic])
            parent = body.name.rpartition("/services/")[0]
            if validate_only:
                return self._operation(parent, body, done=True)
            spec = run_v2.Service(state.service)
            for part in ("labels", "annotations", "template", "traffic"):
                setattr(spec, part, getattr(body, part))
            spec.generation = state.service.generation + 1
            return self._reconcile(parent, state, spec)

    def delete_service(self, name: str):
        with self._lock:
            state = self.services.pop(name, None)
            if state is None:
                raise ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"Resource '{name}' was not found")
            self._stop_all(state)
            return self._operation(name.rpartition("/services/")[0], state.service, done=True)

    def get_operation(self, name: str) -> operations_pb2.Operation:
        with self._lock:
            if name not in self.operations:
                raise ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"Operation '{name}' was not found")
            return self.operations[name]

    # -- what Cloud Run checks and does ----------------------------------------------------------------------------

    def _check(self, body: run_v2.Service, known: set[str]) -> None:
        service_id = body.name.rpartition("/")[2]
        template = body.template
        if template.revision and not template.revision.startswith(service_id + "-"):
            raise ApiError(
                HTTPStatus.BAD_REQUEST,
                "INVALID_ARGUMENT",
                f"Revision name must be prefixed by the name of the enclosing Service: {template.revision}",
            )
        if len(template.containers) != 1 or not template.containers[0].image:
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "exactly one container with an image")
        resources = template.containers[0].resources
        if template.node_selector.accelerator:
            if resources.limits.get("nvidia.com/gpu") != "1":
                raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "a GPU needs limits nvidia.com/gpu: 1")
            if resources.cpu_idle:
                raise ApiError(
                    HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "GPU requires instance-based billing (cpu_idle false)"
                )
        if sum(target.percent for target in body.traffic) != 100:
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "Traffic percents must sum to 100")
        allowed = known | {template.revision}
        tags = [target.tag for target in body.traffic if target.tag]
        if len(tags) != len(set(tags)):
            raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", f"Traffic tags must be unique: {tags}")
        for target in body.traffic:
            if target.type_ == REVISION and target.revision not in allowed:
                raise ApiError(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", f"Revision {target.revision} does not exist")

    def _operation(self, parent: str, service: run_v2.Service, done: bool) -> operations_pb2.Operation:
        name = f"{parent}/operations/{uuid.uuid4()}"
        operation = operations_pb2.Operation(name=name, done=done, metadata=_pack(service))
        if done:
            operation.response.CopyFrom(_pack(service))
        self.operations[name] = operation
        return operation

    def _reconcile(self, parent: str, state: ServiceState, spec: run_v2.Service) -> operations_pb2.Operation:
        """Record the new spec and bring it about in the background (a new revision starts, traffic moves)."""
        previous_traffic = list(state.service.traffic)
        state.service = spec
        spec.reconciling = True
        operation = self._operation(parent, spec, done=False)
        worker = threading.Thread(target=self._bring_about, args=(state, spec, operation.name, previous_traffic))
        self._workers.append(worker)
        worker.start()
        return operation

    def _bring_about(self, state: ServiceState, spec: run_v2.Service, operation: str, previous_traffic) -> None:
        template = spec.template
        revision = template.revision or f"{spec.name.rpartition('/')[2]}-{next(self._counter):05d}"
        failure = ""
        if revision not in state.revisions:
            failure = self._start_revision(state, revision, template)
        with self._lock:
            service = state.service
            if failure:
                service.latest_created_revision = f"{spec.name}/revisions/{revision}"
                service.traffic = previous_traffic  # as Cloud Run: the failed spec is not rolled out
                service.terminal_condition = run_v2.Condition(
                    type_=CONDITION_READY, state=FAILED, message=failure, last_transition_time=_now()
                )
            else:
                service.latest_created_revision = f"{spec.name}/revisions/{revision}"
                service.latest_ready_revision = f"{spec.name}/revisions/{revision}"
                service.terminal_condition = run_v2.Condition(
                    type_=CONDITION_READY, state=SUCCEEDED, last_transition_time=_now()
                )
            service.observed_generation = service.generation
            service.reconciling = False
            self._route(state)
            done = self.operations[operation]
            done.done = True
            if failure:
                done.error.CopyFrom(status_pb2.Status(code=9, message=failure))  # FAILED_PRECONDITION
            else:
                done.response.CopyFrom(_pack(service))

    def _start_revision(self, state: ServiceState, revision: str, template: run_v2.RevisionTemplate) -> str:
        """Start the revision's server with the container's environment variables (plain values and secrets) and wait
        for /readyz within its probe budget; '' when ready, else why not."""
        service_id = state.service.name.rpartition("/")[2]
        container = template.containers[0]
        bento_tag = container.image.rpartition("/")[2]
        env = dict(os.environ)
        for variable in container.env:
            if variable.value_source.secret_key_ref.secret:
                secret = variable.value_source.secret_key_ref.secret
                if secret not in self.secrets:
                    return f"Secret {secret} was not found (revision {revision}, variable {variable.name})."
                env[variable.name] = self.secrets[secret]
            else:
                env[variable.name] = variable.value
        probe = container.startup_probe
        budget = max(probe.period_seconds, 1) * max(probe.failure_threshold, 1)
        log = self.home / service_id / f"{revision}.log"
        try:
            server = start_server(bento_tag, "127.0.0.1", free_port(), log, env=env)
        except DeploymentError as error:
            return f"Revision '{revision}' is not ready and cannot serve traffic. {error}"
        try:
            wait_ready(server, budget)
        except DeploymentError as error:
            stop_server(server)
            return (
                f"Revision '{revision}' is not ready and cannot serve traffic. The user-provided container failed "
                f"the configured startup probe checks. {error}"
            )
        with self._lock:
            state.revisions[revision] = RevisionState(revision, bento_tag, server, ready=True)
        return ""

    def _route(self, state: ServiceState) -> None:
        """Point the router at the traffic targets, fill traffic_statuses, and stop revisions nothing names."""
        service = state.service
        latest = service.latest_ready_revision.rpartition("/")[2]
        statuses = []
        traffic, tags = [], {}
        for target in service.traffic:
            revision = latest if target.type_ == LATEST else target.revision
            running = state.revisions.get(revision)
            if running is None or running.server is None:
                continue
            name = target.tag or revision
            uri = f"{service.uri}/{target.tag}" if target.tag else ""
            if target.percent:
                traffic.append({"revision": name, "upstream": running.server.url, "percent": target.percent})
            if target.tag:
                tags[target.tag] = running.server.url
            statuses.append(
                run_v2.TrafficTargetStatus(
                    type_=target.type_, revision=revision, percent=target.percent, tag=target.tag, uri=uri
                )
            )
        write_routes(state.routes_file, traffic, tags)
        service.traffic_statuses = statuses
        named = {status.revision for status in statuses}
        for revision in state.revisions.values():
            if revision.name not in named and revision.server is not None:
                stop_server(revision.server)
                revision.server = None


class _Handler(BaseHTTPRequestHandler):
    """JSON over HTTP as the REST transport sends it (camelCase fields, integer enums, `$alt` in the query)."""

    standin: CloudRunStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        pass

    def _reply(self, status: HTTPStatus, payload: str) -> None:
        body = payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> str:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length).decode() if length else "{}"

    def _dispatch(self, method: str) -> None:
        url = urlparse(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        validate_only = query.get("validateOnly") == "true"
        self.standin.requests.append((method, url.path))
        try:
            result = self._call(method, url.path, query, validate_only)
        except ApiError as error:
            payload = {"error": {"code": int(error.status), "message": error.message, "status": error.reason}}
            self._reply(error.status, json.dumps(payload))
            return
        except json_format.ParseError as error:
            payload = {"error": {"code": 400, "message": str(error), "status": "INVALID_ARGUMENT"}}
            self._reply(HTTPStatus.BAD_REQUEST, json.dumps(payload))
            return
        message = result if isinstance(result, operations_pb2.Operation) else run_v2.Service.pb(result)
        self._reply(HTTPStatus.OK, json_format.MessageToJson(message))

    def _parse_service(self) -> run_v2.Service:
        message = run_v2.Service.pb(run_v2.Service())
        json_format.Parse(self._body(), message)
        return run_v2.Service.wrap(message)

    def _call(self, method: str, path: str, query: dict[str, str], validate_only: bool):
        standin = self.standin
        if method == "POST" and (match := _SERVICES.match(path)):
            return standin.create_service(match[1], query.get("serviceId", ""), self._parse_service(), validate_only)
        if match := _SERVICE.match(path):
            if method == "GET":
                return standin.get_service(match[1])
            if method == "PATCH":
                body = self._parse_service()
                body.name = body.name or match[1]
                return standin.update_service(body, validate_only)
            if method == "DELETE":
                return standin.delete_service(match[1])
        if method == "GET" and (match := _OPERATION.match(path)):
            return standin.get_operation(match[1])
        raise ApiError(HTTPStatus.NOT_FOUND, "NOT_FOUND", f"{method} {path} is not a call this stand-in implements")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")
