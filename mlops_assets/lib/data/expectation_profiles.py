"""Expectation profiles: the reviewable per-dataset bounds of the validation suite, read from YAML files."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from mlops_assets.lib.data.image_conversion import ALL_MODES
from mlops_assets.lib.data.image_policy import DEFAULT_FORMATS, ImagePolicy
from mlops_assets.lib.errors import DatasetError
from mlops_assets.lib.settings_validation import ConfigError, problems, read_yaml

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


_Text = Annotated[str, BeforeValidator(lambda value: str(value) if type(value) is int else value)]
_Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class ProfileSettings(BaseModel):
    """A profile file's settings as written (sections flattened): names, types and ranges checked, so a bad value is
    refused by name when the profile is read, never by an error from inside the validation library."""

    # Numbers must be numbers ("0.05" is refused, not guessed at); a label or mode written as a bare integer (`1`)
    # is read as the text it stands for.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: str = Field(DEFAULT_PROFILE, min_length=1)
    allowed_formats: list[_Text] = Field(list(DEFAULT_FORMATS), min_length=1)
    allowed_modes: list[_Text] = Field(list(ALL_MODES), min_length=1)
    min_side: int = Field(4, ge=1)
    max_side: int = Field(65_535, ge=1)
    max_pixels: int = Field(40_000_000, ge=1)
    max_bytes: int = Field(20_000_000, ge=1)
    min_bytes: int = Field(1, ge=0)
    min_contrast: _Fraction = 0.01
    max_quarantined_fraction: _Fraction = 0.05
    min_classes: int = Field(2, ge=1)
    min_images_per_class: int = Field(5, ge=1)
    max_class_imbalance: float = Field(20.0, ge=1.0)
    labels: list[_Text] = []
    max_duplicate_fraction: _Fraction = 0.0


class ProfileError(ConfigError, DatasetError):
    """An expectation profile cannot be used as written."""


def _from_mapping(data: dict, source: str) -> ExpectationProfile:
    flat: dict = {}
    written_in: dict[str, str] = {}  # setting -> where it was written ("dataset.min_classes"), for messages
    for section in _SECTIONS:
        content = data.get(section)
        if content is None:
            continue
        if not isinstance(content, dict):
            raise ProfileError(source, [f"{section} = {content!r}: expected a mapping of settings"])
        flat.update(content)
        written_in.update({key: f"{section}.{key}" for key in content})
    flat.update({key: value for key, value in data.items() if key not in _SECTIONS})
    for key in data:
        if key not in _SECTIONS:
            written_in.pop(key, None)
    try:
        settings = ProfileSettings.model_validate(flat)
    except ValidationError as error:
        raise ProfileError(source, problems(error, ProfileSettings, written_in)) from error
    profile = ExpectationProfile(
        **{key: tuple(value) if isinstance(value, list) else value for key, value in settings.model_dump().items()}
    )
    try:
        profile.image_policy()
    except ValueError as error:
        raise ProfileError(source, [f"an image policy that cannot work: {error}"]) from error
    return profile


def load_profile(name_or_path: str = DEFAULT_PROFILE) -> ExpectationProfile:
    """A profile by name (a file in mlops_assets/expectations/) or by path to a YAML file.

    Raises ProfileError (a DatasetError) naming the file, each bad setting, its value and what is allowed.
    """
    candidate = Path(name_or_path).expanduser()
    path = candidate if candidate.suffix in {".yaml", ".yml"} else PROFILES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        available = ", ".join(repr(item.stem) for item in sorted(PROFILES_DIR.glob("*.yaml")))
        raise ProfileError(
            "validated_images config",
            [
                f"expectations = {name_or_path!r}: expectation profile not found (looked for {path}); expected one of "
                f"{available} or the path of a YAML file"
            ],
        )
    try:
        data = read_yaml(path)
    except ConfigError as error:
        raise ProfileError(error.source, error.problems) from error
    if not isinstance(data, dict):
        raise ProfileError(str(path), [f"expected a mapping of sections ({', '.join(_SECTIONS)}), not {data!r}"])
    return _from_mapping(data, str(path))
