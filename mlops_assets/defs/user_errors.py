"""A user error in a step, in the run's own log: one ERROR line saying what to fix, next to Dagster's failure event.

Dagster shows a step failure in the UI as its wrapper ("Error occurred while executing op ...") followed by the user's
exception and its stack trace; the console logger (console_logger.py) shortens that only on the console of runs
that configure it, as `mlops run` does. Runs launched from the UI, a schedule or a sensor get Dagster's default
logger, so their log needs the message as an event of its own: every pipeline asset carries this failure hook.
"""

from __future__ import annotations

import dagster as dg

from mlops_assets.lib.errors import MLOpsError

# Set on the hook's log record, so the console logger can leave it out: its STEP_FAILURE line already says the same.
USER_ERROR_RECORD = "mlops_user_error"


@dg.failure_hook(name="user_error_message")
def user_error_message(context: dg.HookContext) -> None:
    """Log a step's user error (an MLOpsError: bad data or settings) as one ERROR line; other exceptions, which may
    be bugs, keep Dagster's failure event with their stack trace alone."""
    error = context.op_exception
    if isinstance(error, MLOpsError):
        context.log.error(f"{context.step_key} failed: {error}", extra={USER_ERROR_RECORD: True})


def with_user_error_messages(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    """The assets with `user_error_message` attached, in whichever job they run (the UI's included)."""
    return [asset.with_hooks({user_error_message}) for asset in assets]
