"""The deployer interface: one implementation per target (local processes, Cloud Run), chosen by the stage's config."""

from __future__ import annotations

import abc
from collections.abc import Callable

from mlops_assets.lib.deploy.release import DeploymentRecord, Release
from mlops_assets.lib.environment_settings import EnvironmentSettings


class Deployer(abc.ABC):
    """Makes what runs in one stage match a release."""

    @abc.abstractmethod
    def deploy(self, release: Release, *, dry_run: bool = False) -> DeploymentRecord:
        """Bring `release` live: start it beside what serves, check /readyz and the canary, switch the stage's main
        URL to it, drain and retire the previous main revision (it stays reachable at its pinned URL). `dry_run`
        starts and changes nothing and returns the record the deployment would produce. Raises DeploymentError
        (what was serving keeps serving)."""

    @abc.abstractmethod
    def rollback(self, check: Callable[[int], None] | None = None) -> DeploymentRecord:
        """Move the stage's main URL back to the previous revision; `check(model_version)` is called with that
        revision's model version before anything changes and refuses by raising DeploymentError. Raises
        DeploymentError when there is no previous revision."""

    @abc.abstractmethod
    def undeploy(self) -> None:
        """Stop everything the stage serves (main URL and pinned revisions); a no-op when nothing is deployed."""

    @abc.abstractmethod
    def status(self) -> DeploymentRecord | None:
        """What is live in the stage now, or None when nothing is deployed."""

    def health(self) -> list[str]:
        """What is wrong with what `status` says serves, one phrase each naming the fix; [] when all is as recorded
        (a target that cannot tell says [])."""
        return []


def deployer_for(stage: str, environment_settings: EnvironmentSettings) -> Deployer:
    """The deployer of `stage` (staging | production) in the environment whose settings are given, by the stage's
    `target`; raises ValueError for an unknown stage."""
    stage_settings = environment_settings.deployments.stage(stage)
    if stage_settings.target == "cloud_run":
        # Imported here so the local target never needs the Cloud Run client libraries.
        from mlops_assets.resources.cloud_run_deployer import CloudRunDeployer

        return CloudRunDeployer(stage, environment_settings)
    from mlops_assets.resources.local_target import LocalDeployer

    return LocalDeployer(stage, environment_settings)
