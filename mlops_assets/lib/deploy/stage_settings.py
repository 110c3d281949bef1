"""The `deployments:` section of an environment file: one entry per deployment stage (`staging`, `production`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlops_assets.lib.deploy.validation import CloudRunSettings

STAGES = ("staging", "production")


class StageSettings(BaseModel):
    """How one stage is deployed: `deployments.<stage>:`."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    # local: supervised BentoML servers on this machine behind a router; cloud_run: a Cloud Run service.
    target: Literal["local", "cloud_run"] = "local"
    # local: the interface the stage's router binds; a non-loopback address requires the serving API key to be set.
    host: str = Field("127.0.0.1", min_length=1)
    # local: the stage's main URL (router) port; each deployed version gets its own free loopback port. Neither the
    # other stage's port, nor server.port (`mlops deploy local`), nor the Dagster UI's (validation.DAGSTER_UI_PORT).
    port: int = Field(3100, ge=1, le=65535)
    # Seconds a new version has to answer /readyz before it is refused.
    ready_timeout_s: float = Field(120.0, gt=0)
    # Seconds in-flight requests get to finish on the old version after the switch before it is stopped.
    drain_timeout_s: float = Field(30.0, gt=0)
    # The stage whose canary must have passed on the same model version first (production: staging).
    after: Literal["staging", "production"] | None = None
    # manual: a person runs `mlops deploy production`; automatic: the deployment asset follows once `after` passed.
    rollout: Literal["manual", "automatic"] = "manual"
    # Held-out test images sent as the canary, with the predictions evaluation recorded for them.
    canary_cases: int = Field(8, ge=1, le=256)
    # cloud_run: the Cloud Run service settings (required there, refused on a local stage; see validation.py).
    cloud_run: CloudRunSettings | None = None


class DeploymentsSettings(BaseModel):
    """Every stage of the environment: `deployments:`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    staging: StageSettings = StageSettings(port=3100)
    production: StageSettings = StageSettings(port=3130, after="staging")

    def stage(self, name: str) -> StageSettings:
        """The settings of `name`; raises ValueError naming the stages when it is none of them."""
        if name not in STAGES:
            raise ValueError(f"Unknown deployment stage {name!r}: use one of {', '.join(STAGES)}.")
        return getattr(self, name)
