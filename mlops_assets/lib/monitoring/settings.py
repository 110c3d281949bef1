"""The `monitoring:` section of an environment file: drift thresholds, schedules and where alerts go."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class AlertSettings(BaseModel):
    """Where alerts go: always the local alert log; also a webhook when the variable `webhook_url_env` names is set."""

    model_config = ConfigDict(extra="forbid", strict=True)

    # The environment variable holding the webhook's URL (a secret, so never written in the file).
    webhook_url_env: str = Field("MLOPS_ALERT_WEBHOOK_URL", pattern=ENV_VAR_NAME, json_schema_extra=_ENV_VAR_NOTE)
    # Seconds to wait for the webhook to answer.
    webhook_timeout_s: float = Field(10.0, gt=0, le=300)


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
    # When the monitoring schedule checks the previous day (UTC).
    schedule_cron: str = Field("30 0 * * *", pattern=CRON_PATTERN, json_schema_extra=_CRON_NOTE)
    # When the pipeline retrains on the current data (the gate still decides promotion); none: no scheduled retraining.
    retraining_cron: str | None = Field(None, pattern=CRON_PATTERN, json_schema_extra=_CRON_NOTE)
    # The drift sensor requests a retraining run when a monitored day shows severe drift.
    retrain_on_severe_drift: bool = True
    alerts: AlertSettings = AlertSettings()
