"""`mlops monitor`: grade a day's logged predictions against the model's baseline and print the verdict per signal."""

from __future__ import annotations

import argparse
import datetime as dt
import os

from mlops_assets import settings
from mlops_assets.lib.serving.prediction_store import LOG_STAGES
from mlops_assets.lib.settings_validation import ConfigError

# The first day the monitoring partitions hold (defs/monitoring/assets.MONITORING_PARTITIONS, not imported here so
# that `mlops --help` does not load Dagster).
FIRST_DAY = dt.date(2026, 1, 1)


def _day(text: str | None) -> dt.date:
    """The day to monitor: `--date` (YYYY-MM-DD, from FIRST_DAY to today, UTC) or today."""
    today = dt.datetime.now(dt.UTC).date()
    if text is None:
        return today
    try:
        day = dt.date.fromisoformat(text)
    except ValueError:
        raise ConfigError("command line", [f"--date = {text!r}: expected a day as YYYY-MM-DD"]) from None
    if not FIRST_DAY <= day <= today:
        raise ConfigError("command line", [f"--date = {text!r}: expected a day from {FIRST_DAY} to {today} (UTC)"])
    return day


def _check_outcomes(summary) -> tuple[str, list[str]]:
    """The monitoring checks' outcomes in one line, and the run's other warnings and failures as they are."""
    from mlops_assets.defs.monitoring.assets import MONITORING_ASSET, NO_DRIFT_CHECK, NO_SEVERE_DRIFT_CHECK

    outcomes = {NO_DRIFT_CHECK: "passed", NO_SEVERE_DRIFT_CHECK: "passed"}
    others = []
    for kind, texts in (("warning", summary.warnings), ("error", summary.failures)):
        for text in texts:
            check = next((name for name in outcomes if text.startswith(f"check {name} on {MONITORING_ASSET} ")), None)
            if check is None:
                others.append(f"warning: {text}" if kind == "warning" else text)
            else:
                outcomes[check] = f"failed ({kind})"
    return ", ".join(f"{name} {outcome}" for name, outcome in outcomes.items()), others


def _openable(location: str) -> str:
    """A recorded location as the user can open it from any folder: a URL (gs://...) as it is, a path made absolute
    (the metadata holds paths relative to MLOPS_HOME)."""
    if "://" in location:
        return location
    from mlops_assets.defs.metadata import resolve_home_path

    return str(resolve_home_path(location).resolve())


def format_monitoring(summary) -> str:
    """The run's outcome, the verdict per signal with its statistic and thresholds (or why nothing was compared),
    the checks, the report and any alert."""
    from mlops_assets.defs.monitoring.assets import MONITORING_ASSET
    from mlops_assets.lib.monitoring.verdicts import COMPARED, SignalVerdict

    lines = [f"Dagster run {summary.run_id}: {'SUCCESS' if summary.success else 'FAILED'}"]
    lines += [f"  housekeeping:  {note}" for note in summary.housekeeping]
    found = summary.materialized.get(MONITORING_ASSET)
    checks, others = _check_outcomes(summary)
    if found is not None:
        version = found["model_version"]
        monitored = f"version {version} ({found['model_tag']})" if version else "no model version"
        lines.append(
            f"  monitored:     {monitored} in {found['environment']}, stage {found['stage']}, on {found['day']}: "
            f"{found['num_predictions']} logged prediction(s) ({found['log_files']} log file(s) in "
            f"{found['log_source']})"
        )
        if found["other_versions"]:
            others_seen = ", ".join(f"{tag} ({count})" for tag, count in found["other_versions"].items())
            lines.append(f"  not compared:  records of other model versions: {others_seen}")
        if "live_accuracy_verdict" in found:
            lines.append(f"  accuracy:      {found['live_accuracy_verdict']}")
        if found["log_problems"] != "none":
            lines.append(f"  left out:      {found['log_problems']}")
        verdicts = [SignalVerdict.from_dict(values) for values in found["signals"]]
        if found["overall"] in COMPARED:
            lines.append(f"  overall:       {found['overall']}")
            lines += [f"    {verdict.describe()}" for verdict in verdicts]
        else:
            # Nothing was compared: one reason for every signal.
            lines.append(f"  overall:       {found['overall']}: {verdicts[0].detail}")
        if "deployment_comparison" in found:
            lines.append(f"  vs previous:   {found['deployment_comparison']}")
        lines.append(f"  checks:        {checks}")
        if "service" in found:
            lines.append(f"  service:       {found['service']}")
        if "report" in found:
            lines.append(f"  report:        {_openable(str(found['report']))}")
        if "alert" in found:
            lines.append(f"  alert:         {found['alert']}")
    lines += [f"  {line}" for line in others]
    return "\n".join(lines)


def _stages(requested: str | None, day: dt.date) -> list[str]:
    """`--stage`, else every stage that logged predictions on `day`, else production."""
    if requested:
        return [requested]
    from mlops_assets.environments import opened
    from mlops_assets.lib.monitoring.logs import stages_logged

    with opened("prediction_logs") as logs:
        return stages_logged(logs.store(), day) or ["production"]


def command_monitor(args: argparse.Namespace) -> int:
    if args.env:
        os.environ["MLOPS_ENV"] = args.env
    if args.version is not None and args.version < 1:
        raise ConfigError("command line", [f"--version = {args.version}: expected an integer >= 1"])
    day = _day(args.date)
    settings.environment_settings()  # the environment file, `monitoring:` included, before a run exists
    settings.export_environment()
    if args.version is not None:
        from mlops_assets.registry_home import open_registry

        # An unknown version is the caller's mistake, not a day without a model: one line, exit 1, no run.
        with open_registry() as models:
            models.version(args.version)  # RegistryError: "There is no version N of ...; see `mlops models list`."
    from mlops_assets.defs.monitoring.assets import MONITORING_PARTITIONS, monitoring_partition
    from mlops_assets.defs.monitoring.jobs import MONITORING_JOB_NAME
    from mlops_assets.runner import _execute, _open_instance

    run_config = {"ops": {"prediction_monitoring": {"config": {"version": args.version}}}} if args.version else None
    stages = _stages(args.stage, day)
    instance, tidied = _open_instance()
    failed = False
    with instance:
        for number, stage in enumerate(stages):
            partition = MONITORING_PARTITIONS.get_tags_for_partition_key(monitoring_partition(day, stage))
            summary = _execute(
                instance, run_config, None, {"launched_by": "mlops monitor", **partition}, MONITORING_JOB_NAME
            )
            summary.housekeeping = tidied if number == 0 else []
            print(format_monitoring(summary))
            # A failed run, or a failed error-severity check (severe drift), is a failure; drift alone is a warning.
            failed = failed or not summary.success or bool(summary.failures)
    return 1 if failed else 0


def add_monitor_parser(commands: argparse._SubParsersAction) -> None:
    monitor = commands.add_parser(
        "monitor",
        help="grade a day's logged predictions of each deployment stage against the baseline of the version live "
        "there; print the verdict per signal",
    )
    monitor.add_argument("--env", choices=["local", "staging", "production"], help="environment (default: MLOPS_ENV)")
    monitor.add_argument("--date", help="UTC day as YYYY-MM-DD (default: today)")
    monitor.add_argument(
        "--version",
        type=int,
        help="registry version to monitor (default: the one live in the stage; unstaged: production's)",
    )
    monitor.add_argument(
        "--stage",
        choices=LOG_STAGES,
        help="deployment stage whose traffic to grade (unstaged: servers started outside a deployment stage, e.g. "
        "`mlops deploy local`; default: every stage that logged predictions that day, else production)",
    )
    monitor.set_defaults(handler=command_monitor)
