"""The local deployment target: each stage's revisions as supervised BentoML servers on their own loopback ports,
behind the stage's router on the stage's port (its main URL; `/<revision>/...` pins a revision)."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mlops_assets import settings
from mlops_assets.lib.atomic import atomic_write_text
from mlops_assets.lib.deploy.canary import run_canary
from mlops_assets.lib.deploy.progress import step
from mlops_assets.lib.deploy.release import (
    CanaryCase,
    CanaryResult,
    DeploymentError,
    DeploymentRecord,
    Release,
    TrafficShare,
)
from mlops_assets.lib.deploy.router import start_router, write_routes
from mlops_assets.lib.deploy.supervisor import (
    ServerProcess,
    free_port,
    group_alive,
    is_loopback,
    leader_alive,
    port_is_free,
    record_tree,
    start_server,
    stop_server,
    url_for,
    wait_ready,
)
from mlops_assets.lib.environment_settings import EnvironmentSettings
from mlops_assets.resources.deployer import Deployer
from mlops_assets.resources.local_deployer import require_local_bento

# How often the drain looks at the router's in-flight counts.
DRAIN_POLL_S = 0.1


@dataclass
class RevisionState:
    """One deployed revision: its server and the canary it must pass again when it takes the main URL back."""

    model_version: int
    bento_tag: str
    server: ServerProcess
    canary: tuple[CanaryCase, ...] = ()


@dataclass
class StageState:
    """What this machine runs for one stage (the state file, `deployments/<env>/<stage>/state.json`)."""

    router: ServerProcess | None = None
    revisions: dict[str, RevisionState] = field(default_factory=dict)
    main: str | None = None
    history: list[str] = field(default_factory=list)  # revisions that held the main URL, oldest first
    record: DeploymentRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "router": self.router.to_json() if self.router else None,
            "revisions": {
                name: {
                    "model_version": r.model_version,
                    "bento_tag": r.bento_tag,
                    "server": r.server.to_json(),
                    "canary": [[c.image_path, c.expected_label] for c in r.canary],
                }
                for name, r in self.revisions.items()
            },
            "main": self.main,
            "history": self.history,
            "record": self.record.to_json() if self.record else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StageState:
        return cls(
            router=ServerProcess.from_json(data["router"]) if data["router"] else None,
            revisions={
                name: RevisionState(
                    r["model_version"],
                    r["bento_tag"],
                    ServerProcess.from_json(r["server"]),
                    tuple(CanaryCase(path, label) for path, label in r["canary"]),
                )
                for name, r in data["revisions"].items()
            },
            main=data["main"],
            history=list(data["history"]),
            record=DeploymentRecord.from_json(data["record"]) if data["record"] else None,
        )


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def ready(server: ServerProcess) -> bool:
    """Whether the server's leader runs and /readyz answers 200 (workers alone, with the leader gone, are not)."""
    if not leader_alive(server):
        return False
    try:
        return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _answers(url: str) -> bool:
    """Whether GET `url` answers 200 within 2 s."""
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class LocalDeployer(Deployer):
    """Deploys one stage of the current environment on this machine (deployments.<stage> with target local)."""

    def __init__(self, stage: str, environment_settings: EnvironmentSettings) -> None:
        self.stage = stage
        self.environment = environment_settings.environment
        self.config = environment_settings.deployments.stage(stage)
        self.api_key_env = environment_settings.serving.api_key_env
        self.directory = settings.deployments_dir() / self.environment / stage

    # --- state -------------------------------------------------------------------------------------------------
    @property
    def _state_file(self) -> Path:
        return self.directory / "state.json"

    @property
    def _routes_file(self) -> Path:
        return self.directory / "routes.json"

    @property
    def url(self) -> str:
        return url_for(self.config.host, self.config.port)

    def _load(self) -> StageState:
        if not self._state_file.exists():
            return StageState()
        return StageState.from_json(json.loads(self._state_file.read_text()))

    def _save(self, state: StageState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._state_file, json.dumps(state.to_json(), indent=1))

    def _lock(self):
        return settings.home_lock(f"deploy-{self.environment}-{self.stage}")

    def _api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    # --- checks before anything starts or stops ----------------------------------------------------------------
    def _preflight(self, state: StageState) -> None:
        """Refuse, before anything is started or stopped, what cannot end in a served stage."""
        if not is_loopback(self.config.host) and not self._api_key():
            raise DeploymentError(
                f"deployments.{self.stage}.host is {self.config.host!r}, reachable from other machines, and "
                f"{self.api_key_env} is not set: set the API key (the service then requires it) or bind 127.0.0.1."
            )
        router_alive = state.router is not None and group_alive(state.router)
        if router_alive and (state.router.host, state.router.port) != (self.config.host, self.config.port):
            # Moving a live stage would leave its clients on the old address; it is done in two explicit steps.
            raise DeploymentError(
                f"{self.stage} is live on {state.router.host} port {state.router.port}, but deployments.{self.stage} "
                f"in {self.environment}.yaml now says {self.config.host} port {self.config.port}; nothing was "
                f"changed. Run `mlops undeploy {self.stage}` first, then deploy it again on the new address."
            )
        if not router_alive and not port_is_free(self.config.host, self.config.port):
            raise DeploymentError(
                f"Port {self.config.port} on {self.config.host} (the {self.stage} stage's URL) is in use by a "
                "program this deployer did not start; nothing was stopped. Stop it, or set "
                f"deployments.{self.stage}.port in {self.environment}.yaml to a free port."
            )

    def _server_environment(self) -> dict[str, str]:
        from mlops_assets.environments import opened

        with opened("prediction_logs", self.environment) as logs:
            problem = logs.problem()
            if problem:
                raise DeploymentError(f"Prediction logs cannot be kept at {logs.where()}: {problem}.")
            # The stage's name, so its servers log apart from the other stage's (monitoring grades them apart).
            extra = logs.server_environment(self.stage)
        return {**os.environ, **settings.export_environment(), **extra}

    # --- the switch --------------------------------------------------------------------------------------------
    def _start_revision(self, release: Release) -> tuple[RevisionState, CanaryResult]:
        """A new server for `release` on a free loopback port, ready and past its canary; stopped and refused
        otherwise (raises DeploymentError naming what failed)."""
        from mlops_assets.environments import fetch_bento

        fetch_bento(release.bento_tag, self.environment)
        require_local_bento(release.bento_tag, release.model_version)
        log = settings.logs_dir() / f"deploy-{self.environment}-{self.stage}-{release.revision}.log"
        # Truncated per start: a refusal's log tail shows this attempt's lines, not an earlier server's.
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")
        server = start_server(release.bento_tag, "127.0.0.1", free_port(), log, self._server_environment())
        step(f"{self.stage}: starting {release.revision} ({release.bento_tag}) at {server.url}; log {log}")
        try:
            wait_ready(server, self.config.ready_timeout_s)
            server = record_tree(server)
            step(f"{self.stage}: {release.revision} is ready; sending {len(release.canary)} canary request(s)")
            canary = self._check_canary(server.url, release.revision, release.canary)
            step(f"{self.stage}: canary of {release.revision} passed ({canary.matched} of {canary.sent})")
        except BaseException:
            stop_server(server)
            raise
        return RevisionState(release.model_version, release.bento_tag, server, release.canary), canary

    def _check_canary(self, url: str, revision: str, cases: tuple[CanaryCase, ...]) -> CanaryResult:
        if not cases:
            raise DeploymentError(
                f"No canary cases for {revision}: a revision gets traffic only after held-out images give the "
                "recorded predictions; record them (`mlops deploy` does from the version's evaluation data)."
            )
        result = run_canary(url, cases, self._api_key())
        if not result.passed:
            raise DeploymentError(
                f"The canary of {revision} failed: {result.matched} of {result.sent} answers matched the recorded "
                f"predictions ({'; '.join(result.failures)}). It was stopped; what was serving keeps serving."
            )
        return result

    def _publish_routes(self, state: StageState) -> None:
        tags = {name: r.server.url for name, r in state.revisions.items()}
        traffic = [{"revision": state.main, "upstream": tags[state.main], "percent": 100}] if state.main else []
        write_routes(self._routes_file, traffic, tags)
        step(f"{self.stage}: main URL {self.url} -> {state.main or 'nothing'}; pinned: {', '.join(sorted(tags))}")
        if state.router is None or not group_alive(state.router):
            log = settings.logs_dir() / f"router-{self.environment}-{self.stage}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_bytes(b"")  # this start's lines only
            state.router = start_router(self.config.host, self.config.port, self._routes_file, log)
        else:
            self._wait_router_uses(state)

    def _wait_router_uses(self, state: StageState, timeout_s: float = 10) -> None:
        """Wait until the router serves the file just written (it reads it on its next request)."""
        deadline = time.monotonic() + timeout_s
        wanted = state.revisions[state.main].server.url if state.main else None
        while time.monotonic() < deadline:
            table = httpx.get(f"{state.router.url}/-/routes", timeout=5).json()
            if [entry["upstream"] for entry in table["traffic"]] == ([wanted] if wanted else []):
                return
            time.sleep(DRAIN_POLL_S)
        raise DeploymentError(f"The router of {self.stage} did not take the new routes within {timeout_s:.0f} s.")

    def _drain_and_stop(self, state: StageState, server: ServerProcess) -> None:
        """Wait (up to drain_timeout_s) until the router has no request in flight on `server`, then stop it."""
        step(f"{self.stage}: draining {server.url} (at most {self.config.drain_timeout_s:g} s), then stopping it")
        deadline = time.monotonic() + self.config.drain_timeout_s
        while state.router is not None and group_alive(state.router) and time.monotonic() < deadline:
            table = httpx.get(f"{state.router.url}/-/routes", timeout=5).json()
            if not table["in_flight"].get(server.url):
                break
            time.sleep(DRAIN_POLL_S)
        stop_server(server)

    def _record(
        self,
        main: Release,
        revisions: Iterable[str],
        previous: str | None,
        canary: CanaryResult | None = None,
        deployed_at: str = "",
    ) -> DeploymentRecord:
        """The stage's record with `main` holding the main URL and each of `revisions` pinned at its own URL."""
        return DeploymentRecord(
            stage=self.stage,
            target="local",
            model_version=main.model_version,
            bento_tag=main.bento_tag,
            revision=main.revision,
            url=self.url,
            traffic=(TrafficShare(main.revision, 100),),
            revision_urls={name: f"{self.url}/{name}" for name in sorted(revisions)},
            canary=canary,
            previous_revision=previous,
            deployed_at=deployed_at,
        )

    def deploy(self, release: Release, *, dry_run: bool = False) -> DeploymentRecord:
        with self._lock():
            state = self._load()
            self._preflight(state)
            # The revision the main URL leaves (a redeploy of the main revision keeps the one before it).
            previous = state.main if state.main != release.revision else (state.history[-2:-1] or [None])[0]
            if dry_run:
                return self._record(release, {*state.revisions, release.revision}, previous)
            new, canary = self._start_revision(release)
            replaced = state.revisions.get(release.revision)
            state.revisions[release.revision] = new
            old_main = state.main
            state.main = release.revision
            try:
                self._publish_routes(state)
            except BaseException:
                stop_server(new.server)
                raise
            # The revision this one replaces under the same name (a restart) drains and stops; the previous main
            # revision keeps serving at its pinned URL until the stage is undeployed.
            if replaced is not None:
                self._drain_and_stop(state, replaced.server)
            if old_main != release.revision:
                state.history.append(release.revision)
            state.record = self._record(release, state.revisions, previous, canary, _now())
            self._save(state)
            return state.record

    def rollback(self, check: Callable[[int], None] | None = None) -> DeploymentRecord:
        with self._lock():
            state = self._load()
            if state.main is None or len(state.history) < 2:
                raise DeploymentError(
                    f"Nothing to roll back to in {self.stage}: no revision held its URL before {state.main or 'now'}."
                )
            self._preflight(state)
            current, target = state.history[-1], state.history[-2]
            revision = state.revisions[target]
            if check is not None:
                check(revision.model_version)
            back = Release(self.stage, revision.model_version, revision.bento_tag, revision.canary)
            if not ready(revision.server):
                restarted, canary = self._start_revision(back)
                stop_server(revision.server)
                state.revisions[target] = revision = restarted
            else:
                canary = self._check_canary(revision.server.url, target, revision.canary)
            state.main = target
            self._publish_routes(state)
            state.history = [*state.history[:-2], target]
            state.record = self._record(back, state.revisions, current, canary, _now())
            self._save(state)
            return state.record

    def undeploy(self) -> None:
        with self._lock():
            state = self._load()
            if state.router is not None:
                stop_server(state.router, grace_s=self.config.drain_timeout_s)  # graceful: in-flight requests end
            for revision in state.revisions.values():
                stop_server(revision.server)
            self._state_file.unlink(missing_ok=True)
            self._routes_file.unlink(missing_ok=True)

    def ports_in_use(self) -> dict[int, str]:
        """{port: what of this stage listens there} for the router and every revision whose processes still run, as
        the state file records them (the router's may differ from deployments.<stage>.port after a settings change)."""
        state = self._load()
        servers = {f"the {self.stage} stage's router": state.router} if state.router is not None else {}
        servers |= {f"{self.stage}'s revision {name}": revision.server for name, revision in state.revisions.items()}
        return {server.port: name for name, server in servers.items() if group_alive(server)}

    def status(self) -> DeploymentRecord | None:
        state = self._load()
        if state.record is None:
            return None
        return state.record

    def health(self) -> list[str]:
        """What is wrong with what the state file says runs (empty when all is as recorded): a dead router, a
        revision whose leader died (its workers may still hold the port), a revision not answering /readyz."""
        state = self._load()
        problems = []
        if state.router is not None and not group_alive(state.router):
            problems.append(f"the router of {self.stage} (pid {state.router.pid}) is not running")
        elif state.router is not None and not _answers(f"{state.router.url}/-/routes"):
            problems.append(
                f"the router of {self.stage} (pid {state.router.pid}) does not answer {state.router.url}/-/routes; "
                f"`mlops deploy {self.stage}` restarts it"
            )
        for name, revision in state.revisions.items():
            if not ready(revision.server):
                problems.append(
                    f"{name} (pid {revision.server.pid}, port {revision.server.port}) does not answer /readyz or its "
                    "leader process is gone; `mlops deploy` restarts it, `mlops undeploy` stops its processes"
                )
        return problems
