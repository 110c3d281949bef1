"""Schedules from the environment file's `monitoring:` section: daily monitoring and periodic retraining."""

import datetime as dt

import dagster as dg

from mlops_assets import settings
from mlops_assets.defs.jobs import training_pipeline_job
from mlops_assets.defs.monitoring.assets import monitoring_partition
from mlops_assets.defs.monitoring.jobs import prediction_monitoring_job
from mlops_assets.lib.monitoring.logs import stages_logged
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets.resources.prediction_logs import PredictionLogs

# Graded every day, logs or not: a production that logged nothing is worth a warning.
ALWAYS_GRADED = "production"

SCHEDULED_RETRAINING = "scheduled retraining"


def _checked_cron(environment: str, setting: str, cron: str) -> str:
    """`cron` when Dagster can schedule it, else a ConfigError naming the file and the setting."""
    from dagster._utils.schedules import is_valid_cron_string  # dagster is pinned exactly; its own cron check

    if not is_valid_cron_string(cron):
        where = str(settings.environment_file(environment))
        raise ConfigError(where, [f"monitoring.{setting} = {cron!r}: expected a valid cron expression of 5 fields"])
    return cron


def graded_stages(logs: PredictionLogs, day: dt.date) -> list[str]:
    """The stages whose `day` is graded: every stage with a log file that day, and production always."""
    found = stages_logged(logs.store(), day)
    return found if ALWAYS_GRADED in found else [ALWAYS_GRADED, *found]


def monitoring_schedule(environment: str) -> dg.ScheduleDefinition:
    """prediction_monitoring of the previous UTC day, per deployment stage, at `monitoring.schedule_cron`."""
    cron = _checked_cron(
        environment, "schedule_cron", settings.environment_settings(environment).monitoring.schedule_cron
    )

    @dg.schedule(
        name="prediction_monitoring_schedule",
        cron_schedule=cron,
        job=prediction_monitoring_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def prediction_monitoring_schedule(
        context: dg.ScheduleEvaluationContext, prediction_logs: PredictionLogs
    ) -> list[dg.RunRequest]:
        """Grade yesterday's (UTC) predictions once the day is complete: one run per stage that logged any."""
        day = (context.scheduled_execution_time.astimezone(dt.UTC) - dt.timedelta(days=1)).date()
        return [
            dg.RunRequest(run_key=f"monitoring-{stage}-{day}", partition_key=monitoring_partition(day, stage))
            for stage in graded_stages(prediction_logs, day)
        ]

    return prediction_monitoring_schedule


def retraining_schedule(environment: str) -> dg.ScheduleDefinition | None:
    """The whole pipeline at `monitoring.retraining_cron` (None when unset); the promotion gate still decides."""
    cron = settings.environment_settings(environment).monitoring.retraining_cron
    if cron is None:
        return None
    return dg.ScheduleDefinition(
        name="retraining_schedule",
        cron_schedule=_checked_cron(environment, "retraining_cron", cron),
        job=training_pipeline_job,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        tags={"mlops/reason": SCHEDULED_RETRAINING},
        description="Retrain on the current dataset; a retrained model is promoted only if it wins the gate.",
    )


def monitoring_schedules(environment: str) -> list[dg.ScheduleDefinition]:
    found = [monitoring_schedule(environment), retraining_schedule(environment)]
    return [schedule for schedule in found if schedule is not None]
