"""The serving settings a bento is built with: one definition, checked by the build and read by the service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_assets.lib.monitoring.settings import CaptureSettings
from mlops_assets.lib.settings_validation import ConfigError, problems


class ServingConfigError(ConfigError, ValueError):
    """The `serving:` settings of an environment config cannot be used."""


class ServingSettings(BaseModel):
    """The `serving:` section of an environment file (`deployments/<env>.yaml`), types checked strictly."""

    # A misspelt key would otherwise be dropped silently and its default served instead; a quoted number or "yes"
    # for a flag is refused rather than guessed at.
    model_config = ConfigDict(extra="forbid", strict=True)

    max_batch_size: int = Field(64, ge=1)
    max_latency_ms: int = Field(2000, ge=1)
    api_workers: int = Field(2, ge=1)
    torch_threads: int = Field(1, ge=1)
    access_log: bool = False
    api_key_env: str = Field("MLOPS_API_KEY", min_length=1)
    prediction_log_sample_rate: float = Field(0.1, ge=0.0, le=1.0)
    # At most one keep-alive connection closed per this many ms while a worker is backlogged; 0 turns it off.
    rebalance_interval_ms: int = Field(200, ge=0)


class ServiceArguments(ServingSettings):
    """Bento arguments (`deployments/<env>.yaml` `serving:` plus the model tag), stored in the bento."""

    # BentoML hands the stored arguments back as it read them; the build checked their types strictly already.
    model_config = ConfigDict(extra="forbid", strict=False)

    model_tag: str
    # What the service keeps for monitoring besides its log (hard cases, inputs of alert labels): the environment
    # file's `monitoring.capture`.
    capture: CaptureSettings = CaptureSettings()


def validate_service_arguments(arguments: dict) -> ServiceArguments:
    """The arguments, or a ServingConfigError naming each bad setting, its value and what is allowed."""
    try:
        return ServiceArguments.model_validate(arguments, strict=True)
    except ValidationError as error:
        raise ServingConfigError(
            "the `serving:` section of the environment config (deployments/<env>.yaml)",
            problems(error, ServiceArguments, prefix="serving"),
        ) from error
