"""The runs' console logger: Dagster's coloured console output, with a user error's stack trace left out.

It is the code location's `console` logger, so it serves every run whose config configures `loggers: console` (the
runs of `mlops run` and `mlops rebuild` do); a run whose config names no logger (one launched from the UI) gets
Dagster's default one, and its log in the UI shows a user error through the `user_error_message` hook
(user_errors.py).
"""

from __future__ import annotations

import logging
import os

import dagster as dg

from mlops_assets.defs.user_errors import USER_ERROR_RECORD
from mlops_assets.lib.errors import DEBUG_VARIABLE, MLOpsError

# Outcomes that are the data or the settings speaking, not a bug: a blocking asset check that failed.
_EXPECTED_FAILURES = frozenset({"DagsterAssetCheckFailedError"})
# Dagster's wrapper around an exception raised in an asset's code; the user's exception is its cause.
_USER_CODE_WRAPPER = "DagsterExecutionStepExecutionError"


def _user_error_names() -> set[str]:
    names: set[str] = set()
    pending: list[type] = [MLOpsError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return names | _EXPECTED_FAILURES


def user_error(error) -> str | None:
    """The first line of a failure's error (Dagster's SerializableErrorInfo) when it is a user error (an MLOpsError,
    a failed blocking check; for the latter with the checks its first line introduces); None for anything else,
    which may be a bug."""
    raised = error.cause if error.cls_name == _USER_CODE_WRAPPER and error.cause is not None else error
    if raised.cls_name not in _user_error_names():
        return None
    lines = [line.strip() for line in (raised.message or "").strip().splitlines() if line.strip()]
    if not lines:
        return raised.cls_name
    if raised.cls_name in _EXPECTED_FAILURES:
        # Dagster's "1 blocking asset check failed with ERROR severity:" names the checks on the lines after it, one
        # "asset: check,check" line per asset; without them the heading says nothing. (An MLOpsError's later lines,
        # such as a server's log tail, stay in the event log.)
        return " ".join([lines[0], "; ".join(lines[1:])]).strip()
    return lines[0]


class ShortUserErrors(logging.Filter):
    """Replaces the stack trace in a failure record whose cause is a user error by `user_error`'s line.

    The record's Dagster event still carries the whole error, so the run's event log (the UI) keeps the trace.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, USER_ERROR_RECORD, False):
            return False  # the user_error_message hook's line: the shortened STEP_FAILURE line says the same
        event = (getattr(record, "dagster_meta", None) or {}).get("dagster_event")
        error = getattr(getattr(event, "event_specific_data", None), "error", None)
        if error is not None and isinstance(record.msg, str):
            short = user_error(error)
            if short is not None:
                head = record.msg.split("\n\n", 1)[0]
                record.msg = f"{head} {short}" if event.event_type == dg.DagsterEventType.STEP_FAILURE else head
                record.args = ()
        return True


@dg.logger(
    config_schema=dg.colored_console_logger.config_schema,
    description=(
        "Dagster's coloured console logger. A failure caused by a user error (bad data or settings, a failed "
        f"blocking check) is one line, without the stack trace the event log keeps; {DEBUG_VARIABLE}=1 prints it."
    ),
)
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    """Dagster's console logger, filtered by ShortUserErrors unless MLOPS_DEBUG is set."""
    logger = dg.colored_console_logger.logger_fn(init_context)
    if not os.environ.get(DEBUG_VARIABLE):
        logger.addFilter(ShortUserErrors())
    return logger
