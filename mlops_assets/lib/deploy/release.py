"""What is deployed where: a release going out, and the record of what is live after a deployment."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from mlops_assets.lib.errors import MLOpsError


class DeploymentError(MLOpsError):
    """A deployment step failed; what was serving before keeps serving. The message says what to do."""


@dataclass(frozen=True)
class CanaryCase:
    """One held-out image and the label the model version predicted for it at evaluation time."""

    image_path: str
    expected_label: str


@dataclass(frozen=True)
class Release:
    """A model version going out to a deployment stage (`staging` or `production`) of the current environment."""

    stage: str
    model_version: int
    bento_tag: str
    canary: tuple[CanaryCase, ...] = ()

    @property
    def revision(self) -> str:
        """The revision name clients pin: `v<model version>` (Cloud Run's revision tag; the local version path)."""
        return f"v{self.model_version}"


@dataclass(frozen=True)
class CanaryResult:
    """Canary requests against one URL: how many answered with the recorded prediction, and the first misses."""

    url: str
    sent: int
    matched: int
    failures: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.sent > 0 and self.matched == self.sent


@dataclass(frozen=True)
class TrafficShare:
    """Percent of a stage's main-URL traffic going to one revision."""

    revision: str
    percent: int


@dataclass(frozen=True)
class DeploymentRecord:
    """What is live in one stage after a deployment: enough to show it, pin it, roll it back and undeploy it."""

    stage: str
    target: str  # "local" or "cloud_run"
    model_version: int
    bento_tag: str
    revision: str
    url: str  # the stage's main URL, which follows promotion
    traffic: tuple[TrafficShare, ...]
    revision_urls: dict[str, str] = field(default_factory=dict)  # revision -> pinned URL, for every deployed one
    canary: CanaryResult | None = None
    previous_revision: str | None = None
    deployed_at: str = ""  # ISO 8601, UTC

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeploymentRecord:
        canary = data.get("canary")
        return cls(
            **{
                **data,
                "traffic": tuple(TrafficShare(**share) for share in data["traffic"]),
                "canary": CanaryResult(**{**canary, "failures": tuple(canary["failures"])}) if canary else None,
            }
        )
