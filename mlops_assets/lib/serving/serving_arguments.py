"""The serving settings a bento is built with: one definition, checked by the build and read by the service."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mlops_assets.lib.errors import MLOpsError


class ServingConfigError(MLOpsError, ValueError):
    """The `serving:` settings of an environment config cannot be used."""


class ServiceArguments(BaseModel):
    """Bento arguments (`deployments/<env>.yaml` `serving:` plus the model tag), stored in the bento."""

    # A misspelt key would otherwise be dropped silently and its default served instead.
    model_config = ConfigDict(extra="forbid")

    model_tag: str
    max_batch_size: int = Field(64, ge=1)
    max_latency_ms: int = Field(2000, ge=1)
    api_workers: int = Field(2, ge=1)
    torch_threads: int = Field(1, ge=1)
    access_log: bool = False
    api_key_env: str = "MLOPS_API_KEY"
    prediction_log_sample_rate: float = Field(0.1, ge=0.0, le=1.0)
    # At most one keep-alive connection closed per this many ms while a worker is backlogged; 0 turns it off.
    rebalance_interval_ms: int = Field(200, ge=0)


def validate_service_arguments(arguments: dict) -> ServiceArguments:
    """The arguments, or a ServingConfigError naming each bad setting."""
    try:
        return ServiceArguments.model_validate(arguments)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors())
        raise ServingConfigError(
            f"Invalid serving settings ({problems}); fix the `serving:` section of the environment config "
            "(deployments/<env>.yaml)."
        ) from error
