"""The promotion policy of one environment: gate thresholds and whether staging goes on to production."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.settings_validation import ConfigError, read_yaml, validate

AUTOMATIC = "automatic"
MANUAL = "manual"
PRIMARY_METRICS = ("accuracy", "macro_f1")


@dataclass(frozen=True)
class PromotionPolicy:
    """Metric values are fractions in [0, 1]."""

    primary_metric: str = "accuracy"
    floor: float = 0.8
    tolerance: float = 0.01
    per_class_margin: float = 0.05
    staging_to_production: str = MANUAL

    def __post_init__(self) -> None:
        if self.primary_metric not in PRIMARY_METRICS:
            raise MLOpsError(f"promotion.primary_metric must be one of {PRIMARY_METRICS}, not {self.primary_metric!r}.")
        if self.staging_to_production not in (AUTOMATIC, MANUAL):
            raise MLOpsError(f"promotion.staging_to_production must be {AUTOMATIC!r} or {MANUAL!r}.")
        for name in ("floor", "tolerance", "per_class_margin"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise MLOpsError(f"promotion.{name} must be a fraction in [0, 1], not {getattr(self, name)!r}.")

    @property
    def automatic_production(self) -> bool:
        return self.staging_to_production == AUTOMATIC


class PromotionSettings(BaseModel):
    """The `promotion:` section of an environment file, as written: names, types and ranges checked."""

    # A quoted number ("0.8") is refused rather than guessed at, and a misspelt key is not silently ignored.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    primary_metric: Literal["accuracy", "macro_f1"] = "accuracy"
    floor: float = Field(0.8, ge=0.0, le=1.0)
    tolerance: float = Field(0.01, ge=0.0, le=1.0)
    per_class_margin: float = Field(0.05, ge=0.0, le=1.0)
    staging_to_production: Literal["automatic", "manual"] = MANUAL

    def policy(self) -> PromotionPolicy:
        return PromotionPolicy(**self.model_dump())


def load_policy(environment_file: Path) -> PromotionPolicy:
    """Read the `promotion:` section of an environment file; a ConfigError names any unknown or bad setting."""
    if not environment_file.is_file():
        raise ConfigError(str(environment_file), ["missing; it holds the promotion policy"])
    content = read_yaml(environment_file)
    if not isinstance(content, dict):
        raise ConfigError(str(environment_file), [f"expected a mapping of sections, not {content!r}"])
    section = content.get("promotion")
    return validate(PromotionSettings, {} if section is None else section, str(environment_file), "promotion").policy()
