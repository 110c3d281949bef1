"""The `monitoring:` section of an environment file: drift thresholds, schedules and where alerts go."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Five fields (minute hour day-of-month month day-of-week); Dagster checks the values when it builds the schedule.
CRON_PATTERN = r"^\S+( +\S+){4}$"
_CRON_NOTE = {"allowed": "a cron expression of five fields, e.g. '0 3 * * 0'"}
ENV_VAR_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_ENV_VAR_NOTE = {"allowed": "an environment variable's name (letters, digits and _, not starting with a digit)"}


class Thresholds(BaseModel):
    """When a signal's statistic means drift and when severe drift (severe must not be below drift)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    drift: float = Field(gt=0)
    severe: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.severe < self.drift:
            raise ValueError(
                f"severe ({self.severe:g}) is below drift ({self.drift:g}); severe drift is the larger one"
            )
        return self


class SlackSettings(BaseModel):
    """Alerts posted to a Slack channel through dagster-slack, when the variable `token_env` names holds a bot token."""

    model_config = ConfigDict(extra="forbid", strict=True)

    channel: str = Field(min_length=1)
    # The environment variable holding the bot token (xoxb-...; a secret, so never written in the file).
    token_env: str = Field("MLOPS_SLACK_TOKEN", pattern=ENV_VAR_NAME, json_schema_extra=_ENV_VAR_NOTE)
    # Slack's Web API; another only for a proxy that forwards to it.
    api_url: str = Field("https://slack.com/api/", pattern=r"^https?://\S+/$")


class AlertSettings(BaseModel):
    """Where alerts go: always the local alert log; also a webhook when the variable `webhook_url_env` names is set,
    and Slack when `slack` is set and its token variable holds a token."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # The environment variable holding the webhook's URL (a secret, so never written in the file).
    webhook_url_env: str = Field("MLOPS_ALERT_WEBHOOK_URL", pattern=ENV_VAR_NAME, json_schema_extra=_ENV_VAR_NOTE)
    # Seconds to wait for the webhook (and Slack) to answer.
    webhook_timeout_s: float = Field(10.0, gt=0, le=300)
    slack: SlackSettings | None = None


class HardCaseSettings(BaseModel):
    """Low-confidence inputs the service keeps for review (`mlops hardcases export`)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    # A prediction at or below this confidence is a hard case.
    confidence: float = Field(0.5, gt=0, lt=1)
    # Share of hard cases kept (decided per image).
    sample_rate: float = Field(1.0, ge=0, le=1)
    # An input larger than this (bytes) is not kept; the size of the hard-case log stays bounded.
    max_bytes: int = Field(256 * 1024, ge=1)
    # At most this many hard cases per server process and UTC day.
    max_per_day: int = Field(1000, ge=0)
    # Share of reviewed hard cases that go to the test split (decided by content hash, so always the same).
    test_share: float = Field(0.5, ge=0, le=1)


class EmbeddingSettings(BaseModel):
    """The model's penultimate-layer embedding logged with sampled predictions (for plug-ins that have one)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    # Share of logged predictions that carry their embedding (0: none; embedding drift is then not monitored).
    sample_rate: float = Field(1.0, ge=0, le=1)
    # A larger embedding is reduced to this many numbers by a fixed random projection, so a log line stays small
    # (about 8 bytes a number) whatever the model; distances, and so drift, are kept approximately.
    max_dims: int = Field(32, ge=2, le=1024)


class CaptureSettings(BaseModel):
    """What the service keeps besides its prediction log: hard cases and the inputs of alert labels."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    hard_cases: HardCaseSettings = HardCaseSettings()
    # Label -> confidence: a prediction of the label at or above it raises an alert with the input saved.
    alert_labels: dict[str, float] = Field(default_factory=dict)
    embeddings: EmbeddingSettings = EmbeddingSettings()

    @field_validator("alert_labels", mode="before")
    @classmethod
    def _text_labels(cls, value: Any) -> Any:
        # YAML reads `{3: 0.9}` as a number: say how to write the label instead of "Input should be a valid string".
        if isinstance(value, Mapping):
            for label, confidence in value.items():
                if not isinstance(label, str):
                    raise ValueError(
                        f"alert_labels: label {label!r} is not text; quote it: {{'{label}': {confidence!r}}}"
                    )
        return value

    @model_validator(mode="after")
    def _confidences(self) -> CaptureSettings:
        for label, confidence in self.alert_labels.items():
            if not 0.0 <= confidence <= 1.0:
                raise ValueError(f"alert_labels.{label} = {confidence!r}: expected a confidence from 0 to 1")
        return self


def alert_label_problem(alert_labels: Mapping[str, float], labels: Sequence[str]) -> str:
    """Why `alert_labels` does not fit a model with `labels` ('' when every alert label is one of them)."""
    unknown = [label for label in alert_labels if label not in labels]
    if not unknown:
        return ""
    return (
        f"monitoring.capture.alert_labels names {', '.join(repr(label) for label in unknown)}, not a label of the "
        f"model (labels: {', '.join(labels)}); correct the setting in the environment file"
    )


class MonitoringSettings(BaseModel):
    """The `monitoring:` section. Defaults were chosen so a few hundred in-distribution predictions stay clear of
    `drift` (sampling noise alone reaches ~0.2 at 100 predictions, ~0.15 at 200)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    # Fewer logged predictions of the monitored version in a day than this: "not enough data", never a verdict.
    min_predictions: int = Field(200, ge=1)
    # A prediction whose confidence is at most this is low-confidence.
    low_confidence: float = Field(0.5, gt=0, lt=1)
    # Input brightness, contrast, width and height, and the confidence: Wasserstein distance in units of the
    # baseline's standard deviation (0.3 = the distribution moved by ~0.3 standard deviations).
    statistics: Thresholds = Thresholds(drift=0.3, severe=1.0)
    # Input format and mode, and the predicted label: Jensen-Shannon distance, from 0 (same) to 1 (disjoint).
    categories: Thresholds = Thresholds(drift=0.25, severe=0.5)
    # The share of low-confidence predictions above the baseline's share (0.1 = ten points more).
    low_confidence_share: Thresholds = Thresholds(drift=0.1, severe=0.25)
    # Embedding drift: ROC AUC of a domain classifier telling the day's embeddings from the baseline's (Evidently's
    # model method; 0.5 = indistinguishable, 1 = fully separable).
    embedding: Thresholds = Thresholds(drift=0.65, severe=0.85)
    # Fewer logged embeddings of the monitored version in a day than this: "not enough data" for embedding drift.
    min_embeddings: int = Field(100, ge=10)
    # After a new version went into service: hours of traffic compared on each side of the switch (the same length
    # before and after), the previous version's against the new one's.
    comparison_window_hours: float = Field(24.0, gt=0, le=24 * 28)
    # When the monitoring schedule checks the previous day (UTC).
    schedule_cron: str = Field("30 0 * * *", pattern=CRON_PATTERN, json_schema_extra=_CRON_NOTE)
    # When the pipeline retrains on the current data (the gate still decides promotion); none: no scheduled retraining.
    retraining_cron: str | None = Field(None, pattern=CRON_PATTERN, json_schema_extra=_CRON_NOTE)
    # The drift sensor requests a retraining run when a monitored day shows severe drift.
    retrain_on_severe_drift: bool = True
    alerts: AlertSettings = AlertSettings()
    # Given to the service when its bento is built.
    capture: CaptureSettings = CaptureSettings()
