"""The promotion policy of one environment: gate thresholds and whether staging goes on to production."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from mlops_assets.lib.errors import MLOpsError

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


def load_policy(environment_file: Path) -> PromotionPolicy:
    """Read the `promotion:` section of an environment file; unknown keys are an error, not ignored."""
    if not environment_file.is_file():
        raise MLOpsError(f"Environment file {environment_file} is missing; it holds the promotion policy.")
    section = (yaml.safe_load(environment_file.read_text()) or {}).get("promotion") or {}
    known = {field.name for field in fields(PromotionPolicy)}
    unknown = set(section) - known
    if unknown:
        raise MLOpsError(f"Unknown keys {sorted(unknown)} in {environment_file} promotion:; known: {sorted(known)}.")
    return PromotionPolicy(**section)
