"""Expectation profiles: the reviewable per-dataset bounds of the validation suite, read from YAML files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from mlops_assets.lib.data.image_conversion import ALL_MODES
from mlops_assets.lib.data.image_policy import DEFAULT_FORMATS, ImagePolicy
from mlops_assets.lib.errors import DatasetError

PROFILES_DIR = Path(__file__).resolve().parents[2] / "expectations"
DEFAULT_PROFILE = "default"


_SECTIONS = ("image_policy", "per_file", "dataset", "warnings")
# The settings that make up the model's image policy (recorded in its package and enforced by the service too).
POLICY_SETTINGS = ("allowed_formats", "allowed_modes", "min_side", "max_side", "max_pixels", "max_bytes")


@dataclass(frozen=True)
class ExpectationProfile:
    """Bounds for one dataset: per-file ones quarantine a file, dataset-wide ones block training.

    The image-policy settings (`POLICY_SETTINGS`) decide what is an image at all, in training and serving alike;
    the quality settings (`min_bytes`, `min_contrast`) quarantine in training only.
    """

    name: str = DEFAULT_PROFILE
    # Image policy: a file outside these is quarantined, and the served model refuses it (README, "Image policy").
    allowed_formats: tuple[str, ...] = DEFAULT_FORMATS
    allowed_modes: tuple[str, ...] = ALL_MODES
    min_side: int = 4
    max_side: int = 65_535
    max_pixels: int = 40_000_000
    max_bytes: int = 20_000_000
    # Per-file quality, training only: a file outside these is quarantined.
    min_bytes: int = 1
    min_contrast: float = 0.01
    # Dataset-wide, blocking.
    max_quarantined_fraction: float = 0.05
    min_classes: int = 2
    min_images_per_class: int = 5
    max_class_imbalance: float = 20.0
    labels: tuple[str, ...] = ()
    # Dataset-wide, warning only.
    max_duplicate_fraction: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def image_policy(self) -> ImagePolicy:
        """The image policy these settings define (raises ValueError for settings that cannot work)."""
        return ImagePolicy(**{name: getattr(self, name) for name in POLICY_SETTINGS})

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def _from_mapping(data: dict, source: str) -> ExpectationProfile:
    known = {field.name for field in fields(ExpectationProfile)}
    flat = {}
    for section in _SECTIONS:
        flat.update(data.get(section) or {})
    flat.update({key: value for key, value in data.items() if key not in _SECTIONS})
    unknown = sorted(set(flat) - known)
    if unknown:
        raise DatasetError(f"Expectation profile {source} has unknown settings {unknown}; known: {sorted(known)}.")
    for key in ("allowed_formats", "allowed_modes", "labels"):
        if key in flat:
            flat[key] = tuple(str(value) for value in flat[key] or ())
    profile = ExpectationProfile(**flat)
    try:
        profile.image_policy()
    except ValueError as error:
        raise DatasetError(f"Expectation profile {source} has an image policy that cannot work: {error}.") from error
    return profile


def load_profile(name_or_path: str = DEFAULT_PROFILE) -> ExpectationProfile:
    """A profile by name (a file in mlops_assets/expectations/) or by path to a YAML file."""
    candidate = Path(name_or_path).expanduser()
    path = candidate if candidate.suffix in {".yaml", ".yml"} else PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        available = sorted(item.stem for item in PROFILES_DIR.glob("*.yaml"))
        raise DatasetError(
            f"Expectation profile {name_or_path!r} not found (looked for {path}); use one of {available} "
            "or the path of a YAML file."
        )
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise DatasetError(f"Expectation profile {path} must be a YAML mapping.")
    return _from_mapping(data, str(path))
