"""The Cloud Run target: a stage's Cloud Run service driven through the official Admin API v2 client (REST)."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from google.api_core import exceptions as google_exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import run_v2
from google.protobuf import json_format

from mlops_assets.lib.deploy.canary import run_canary
from mlops_assets.lib.deploy.cloud_run_spec import (
    RELEASES_ANNOTATION,
    LiveRelease,
    build_service,
    read_releases,
    releases_annotation,
    service_path,
)
from mlops_assets.lib.deploy.progress import step as report_step
from mlops_assets.lib.deploy.release import DeploymentError, DeploymentRecord, Release, TrafficShare
from mlops_assets.lib.environment_settings import EnvironmentSettings
from mlops_assets.resources.deployer import Deployer

if TYPE_CHECKING:
    from mlops_assets.resources.prediction_logs import PredictionLogs

TARGET = "cloud_run"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _tag_of(service: run_v2.Service, revision: str) -> str:
    """The tag (`v12`) of a revision name (`<service>-v12`)."""
    return revision.rpartition("/")[2].removeprefix(service.name.rpartition("/")[2] + "-")


class CloudRunDeployer(Deployer):
    """Deploys a stage to its Cloud Run service: each model version a revision tagged `v<N>`, rolled out through a
    smoke test at its tag URL (0 %), then the configured traffic steps."""

    def __init__(
        self,
        stage: str,
        environment_settings: EnvironmentSettings,
        client: run_v2.ServicesClient | None = None,
        prediction_logs: PredictionLogs | None = None,
    ) -> None:
        self.stage = stage
        self.environment = environment_settings.environment
        stage_settings = environment_settings.deployments.stage(stage)
        # Checked with the rest of the environment file when it was loaded (validation.stage_problems).
        self.settings = stage_settings.cloud_run
        self.api_key_env = environment_settings.serving.api_key_env
        self._client = client
        # The environment's prediction logs (None: the environment's own resource, opened when deploying).
        self._prediction_logs = prediction_logs

    def _log_variables(self) -> dict[str, str]:
        """The container's prediction-log place and stage; raises DeploymentError when the environment keeps its
        prediction logs in a folder of this machine, which a Cloud Run revision cannot write to."""
        if self._prediction_logs is not None:
            return self._checked_log_variables(self._prediction_logs)
        from mlops_assets.environments import opened

        with opened("prediction_logs", self.environment) as logs:
            return self._checked_log_variables(logs)

    def _checked_log_variables(self, logs: PredictionLogs) -> dict[str, str]:
        if logs.is_local():
            raise DeploymentError(
                f"deployments.{self.stage} targets Cloud Run, but {self.environment} keeps prediction logs in a folder "
                f"of this machine ({logs.where()}), which a Cloud Run revision cannot write to; set storage.backend: "
                f"gcs in deployments/{self.environment}.yaml (prediction logs then go to <storage URL>/predictions/) "
                f"or deploy {self.stage} with target: local. Nothing was deployed."
            )
        return logs.server_environment(self.stage)

    # -- the client ------------------------------------------------------------------------------------------------

    @property
    def client(self) -> run_v2.ServicesClient:
        if self._client is None:
            endpoint = self.settings.api_endpoint
            options = ClientOptions(api_endpoint=endpoint) if endpoint else None
            # Credentials travel only over TLS: a plain-http endpoint (a local emulator) gets none.
            credentials = AnonymousCredentials() if endpoint and endpoint.startswith("http://") else None
            self._client = run_v2.ServicesClient(transport="rest", client_options=options, credentials=credentials)
        return self._client

    def _project(self) -> str:
        project = os.environ.get(self.settings.project_env, "").strip()
        if not project:
            raise DeploymentError(
                f"Set {self.settings.project_env} to the Google Cloud project of the {self.stage} Cloud Run service "
                f"(deployments.{self.stage}.cloud_run.project_env names this variable)."
            )
        return project

    def _get(self, name: str) -> run_v2.Service | None:
        try:
            return self.client.get_service(name=name)
        except google_exceptions.NotFound:
            return None

    def _wait(self, operation, what: str) -> run_v2.Service:
        try:
            return operation.result(timeout=self.settings.operation_timeout_s)
        except concurrent.futures.TimeoutError as error:
            raise DeploymentError(
                f"Cloud Run did not finish {what} within {self.settings.operation_timeout_s} s; see the service's "
                "revisions in the console, then deploy again (raise cloud_run.operation_timeout_s if it needs longer)."
            ) from error

    def _send(self, service: run_v2.Service, *, create: bool, validate_only: bool = False):
        if create:
            parent, _, service_id = service.name.rpartition("/services/")
            body = run_v2.Service(service)
            body.name = ""  # Cloud Run names the service from service_id; a name in the body is refused
            request = run_v2.CreateServiceRequest(
                parent=parent, service=body, service_id=service_id, validate_only=validate_only
            )
            return request, self.client.create_service(request=request)
        request = run_v2.UpdateServiceRequest(service=service, validate_only=validate_only)
        return request, self.client.update_service(request=request)

    # -- reading what is live --------------------------------------------------------------------------------------

    @staticmethod
    def _main_shares(service: run_v2.Service) -> list[tuple[str, int]]:
        """(tag, percent) of each revision the main URL sends traffic to, as Cloud Run reports it."""
        return [
            (status.tag or _tag_of(service, status.revision), status.percent)
            for status in service.traffic_statuses
            if status.percent > 0
        ]

    @staticmethod
    def _tagged(service: run_v2.Service | None) -> list[str]:
        return [target.tag for target in service.traffic if target.tag] if service is not None else []

    def _record(
        self, service: run_v2.Service, releases: Sequence[LiveRelease], canary=None, previous: str | None = None
    ) -> DeploymentRecord:
        shares = self._main_shares(service)
        main_tag = max(shares, key=lambda share: share[1])[0] if shares else ""
        live = next((item for item in releases if item.revision == main_tag), None)
        if live is None:
            raise DeploymentError(
                f"Cloud Run service {service.name} serves {main_tag or 'nothing'}, which this project did not deploy "
                f"(the service annotation {RELEASES_ANNOTATION} lists what it deployed); deploy a version with "
                f"`mlops deploy {self.stage}`."
            )
        if previous is None:
            earlier = [item.revision for item in releases if item.revision != main_tag]
            previous = earlier[-1] if earlier else None
        return DeploymentRecord(
            stage=self.stage,
            target=TARGET,
            model_version=live.model_version,
            bento_tag=live.bento_tag,
            revision=main_tag,
            url=service.uri,
            traffic=tuple(TrafficShare(tag, percent) for tag, percent in shares),
            revision_urls={status.tag: status.uri for status in service.traffic_statuses if status.tag},
            canary=canary,
            previous_revision=previous,
            deployed_at=_now(),
        )

    def status(self) -> DeploymentRecord | None:
        """What the stage's service serves now, or None when the service does not exist."""
        service = self._get(service_path(self._project(), self.settings))
        if service is None:
            return None
        return self._record(service, read_releases(service))

    # -- deploying -------------------------------------------------------------------------------------------------

    def _failure(self, name: str, revision: str, error: Exception) -> str:
        service = self._get(name)
        condition = service.terminal_condition.message if service is not None else ""
        return f"Cloud Run revision {revision} did not become ready: {condition or error}"

    def _restore(self, previous: run_v2.Service | None, name: str) -> None:
        """Put the service back as it was before this deployment (its template and traffic), or delete a service this
        deployment created, so nothing half-deployed stays reachable."""
        if previous is None:
            with_service = self._get(name)
            if with_service is not None:
                self._wait(self.client.delete_service(name=name), "deleting the failed service")
            return
        restored = run_v2.Service(
            name=previous.name,
            labels=previous.labels,
            annotations=previous.annotations,
            ingress=previous.ingress,
            template=previous.template,
            traffic=previous.traffic,
        )
        self._wait(self.client.update_service(service=restored), "restoring the previous traffic")

    def deploy(self, release: Release, *, dry_run: bool = False) -> DeploymentRecord:
        """Roll `release` out: its revision tagged `v<N>` at 0 %, the canary at its tag URL, then each traffic step;
        any failure restores the previous traffic and raises DeploymentError. `dry_run` sends the first request
        with validate_only, prints it, and changes nothing."""
        project = self._project()
        variables = self._log_variables()
        name = service_path(project, self.settings)
        current = self._get(name)
        releases = read_releases(current) if current is not None else []
        tagged = self._tagged(current)
        main = self._main_shares(current) if current is not None else []
        if not main:
            first_shares = [(release.revision, 100)]
        elif release.revision in dict(main):
            first_shares = main  # this version already takes traffic: its revision is checked again, then completed
        else:
            first_shares = [*main, (release.revision, 0)]
        old = max(main, key=lambda share: share[1])[0] if main else None
        old = None if old == release.revision else old

        def service_for(shares: Sequence[tuple[str, int]], live: Sequence[LiveRelease]) -> run_v2.Service:
            return build_service(
                project,
                self.settings,
                release,
                api_key_env=self.api_key_env,
                shares=shares,
                tagged=[*tagged, release.revision],
                releases=live,
                variables=variables,
            )

        first = service_for(first_shares, releases)
        if dry_run:
            return self._dry_run(first, create=current is None, releases=releases, release=release)
        _, operation = self._send(first, create=current is None)
        report_step(f"{self.stage}: {'creating' if current is None else 'updating'} {name} with {release.revision}")
        try:
            service = self._wait(operation, f"revision {release.revision}")
        except google_exceptions.GoogleAPICallError as error:
            message = self._failure(name, release.revision, error)
            self._restore(current, name)
            serving = f"; {old} keeps serving" if old else ""
            raise DeploymentError(f"{message}{serving}. Fix the bento or its settings, then deploy again.") from error
        tag_url = next((s.uri for s in service.traffic_statuses if s.tag == release.revision), "")
        api_key = os.environ.get(self.api_key_env) or None
        report_step(f"{self.stage}: {release.revision} is ready; canary at its tag URL {tag_url}")
        canary = run_canary(tag_url, release.canary, api_key)
        if not canary.passed:
            self._restore(current, name)
            serving = f"; {old} keeps serving" if old else ""
            raise DeploymentError(
                f"Canary of {release.revision} at {tag_url} failed ({canary.matched}/{canary.sent} answers matched: "
                f"{'; '.join(canary.failures) or 'no canary cases'}){serving}. Check the bento of model version "
                f"{release.model_version}."
            )
        live = [item for item in releases if item.revision != release.revision]
        live.append(LiveRelease(release.revision, release.model_version, release.bento_tag))
        for percent in self.settings.traffic_steps:
            if old is None and percent < 100:
                continue  # no other revision takes traffic: the new one goes straight to 100 %
            shares = [(release.revision, percent)] + ([(old, 100 - percent)] if percent < 100 else [])
            # The releases recorded change with the last step, when the new one is what the main URL serves.
            step = service_for(shares, live if percent == 100 else releases)
            service = self._wait(self.client.update_service(service=step), f"moving {percent} % to {release.revision}")
            report_step(f"{self.stage}: {percent} % of traffic on {release.revision}")
        return self._record(service, live, canary=canary, previous=old)

    def _dry_run(
        self, first: run_v2.Service, *, create: bool, releases: Sequence[LiveRelease], release: Release
    ) -> DeploymentRecord:
        request, operation = self._send(first, create=create, validate_only=True)
        print(f"Cloud Run {'CreateService' if create else 'UpdateService'} request (validate_only):")
        print(json_format.MessageToJson(type(request).pb(request)))
        operation.result(timeout=self.settings.operation_timeout_s)
        return DeploymentRecord(
            stage=self.stage,
            target=TARGET,
            model_version=release.model_version,
            bento_tag=release.bento_tag,
            revision=release.revision,
            url="",
            traffic=(TrafficShare(release.revision, 100),),
            previous_revision=releases[-1].revision if releases else None,
            deployed_at="",
        )

    # -- rollback, undeploy ----------------------------------------------------------------------------------------

    def rollback(self, check: Callable[[int], None] | None = None) -> DeploymentRecord:
        """All main-URL traffic back to the release that was live before the current one; the current one stays
        reachable at its tag URL. Raises DeploymentError when nothing earlier was deployed."""
        name = service_path(self._project(), self.settings)
        service = self._get(name)
        if service is None:
            raise DeploymentError(f"Nothing is deployed in {self.stage} (no Cloud Run service {name}).")
        releases = read_releases(service)
        shares = self._main_shares(service)
        main_tag = max(shares, key=lambda share: share[1])[0] if shares else ""
        earlier = [item for item in releases if item.revision != main_tag]
        if not earlier:
            raise DeploymentError(
                f"{self.stage} has no release before {main_tag or 'the current one'} to roll back to; deploy a "
                f"version with `mlops deploy {self.stage} --version N` instead."
            )
        target = earlier[-1]
        if check is not None:
            check(target.model_version)
        restored = run_v2.Service(
            name=service.name,
            labels=service.labels,
            annotations={**service.annotations, RELEASES_ANNOTATION: releases_annotation(earlier)},
            ingress=service.ingress,
            template=service.template,
            traffic=[
                run_v2.TrafficTarget(
                    type_=t.type_, revision=t.revision, tag=t.tag, percent=100 if t.tag == target.revision else 0
                )
                for t in service.traffic
                if t.tag
            ],
        )
        updated = self._wait(self.client.update_service(service=restored), f"rolling back to {target.revision}")
        return self._record(updated, earlier, previous=main_tag or None)

    def undeploy(self) -> None:
        """Delete the stage's service (every revision and tag URL with it); a no-op when it does not exist."""
        name = service_path(self._project(), self.settings)
        try:
            operation = self.client.delete_service(name=name)
        except google_exceptions.NotFound:
            return
        self._wait(operation, f"deleting {name}")
