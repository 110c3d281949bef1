"""A user error in a step is one ERROR line in the run's own log (what the UI shows), whoever launched the run; a bug
gets no such line and keeps its stack trace; the console of `mlops run` does not print the message twice."""

import logging
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster_graphql.client.query import LAUNCH_PIPELINE_EXECUTION_MUTATION
from dagster_graphql.test.utils import execute_dagster_graphql

from mlops_assets import settings
from mlops_assets.code_location import LOCATION_NAME, workspace_file
from mlops_assets.definitions import build_definitions
from mlops_assets.defs.console_logger import console_logger
from mlops_assets.defs.jobs import PIPELINE_JOB_NAME
from mlops_assets.defs.user_errors import user_error_message, with_user_error_messages
from mlops_assets.lib.errors import DEBUG_VARIABLE, DatasetError
from mlops_assets_tests.cli_processes import not_images

UNDECODABLE = (
    "{name}: cannot be decoded: The bytes are not a recognised image; send an image file (PNG, JPEG, WebP, BMP, TIFF "
    "or GIF)."
)
# Seconds a run launched as the UI does may take to fail (a run worker process starts and imports the pipeline).
LAUNCHED_RUN_DEADLINE_S = 300


def _error_lines(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str | None, str]]:
    """The run's ERROR-level log messages that are not Dagster events: (step, message)."""
    return [
        (entry.step_key, entry.user_message)
        for entry in instance.all_logs(run_id)
        if not entry.is_dagster_event and entry.level == logging.ERROR
    ]


@dg.asset
def refused() -> None:
    raise DatasetError("None of the 4 image files under /data is accepted; convert or replace them.")


@dg.asset
def buggy() -> None:
    raise KeyError("a bug")


def test_a_user_error_is_one_error_line_in_the_log_of_a_run_without_logger_config() -> None:
    """A run whose config names no logger, as one launched from the UI: Dagster's default logger, and the hook."""
    assets = with_user_error_messages([refused, buggy])
    with dg.instance_for_test() as instance:
        for asset in assets:
            result = dg.materialize([asset], instance=instance, raise_on_error=False)
            assert not result.success
            failure = result.get_step_failure_events()[0].event_specific_data.error
            if asset.key == refused.key:
                assert _error_lines(instance, result.run_id) == [
                    (
                        "refused",
                        "refused failed: None of the 4 image files under /data is accepted; convert or replace them.",
                    )
                ]
                assert failure.cause.cls_name == "DatasetError" and failure.cause.stack  # the trace is kept
            else:
                assert _error_lines(instance, result.run_id) == []  # a bug: Dagster's failure with its trace only
                assert failure.cause.cls_name == "KeyError"


def test_the_console_of_a_cli_run_shows_the_message_once(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DEBUG_VARIABLE, "")
    (asset,) = with_user_error_messages([refused])
    job = dg.define_asset_job("refused_job", selection=[asset])
    defs = dg.Definitions(assets=[asset], jobs=[job], loggers={"console": console_logger})
    # As `mlops run` configures it.
    run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    assert not defs.resolve_job_def("refused_job").execute_in_process(run_config, raise_on_error=False).success
    lines = [line for line in capsys.readouterr().err.splitlines() if "None of the 4 image files" in line]
    assert len(lines) == 1 and " - STEP_FAILURE - " in lines[0], lines


def test_every_asset_of_the_code_location_carries_the_hook() -> None:
    defs = build_definitions()
    # The asset graph also holds the asset checks, as definitions without assets of their own.
    assets = [asset for asset in defs.resolve_asset_graph().assets_defs if asset.keys]
    assert {key.to_user_string() for asset in assets for key in asset.keys} >= {
        "raw_images",
        "validated_images",
        "trained_model",
        "model_evaluation",
        "bento",
        "model_promotion",
    }
    assert all(user_error_message in asset.hook_defs for asset in assets)


@pytest.mark.e2e
def test_a_run_launched_from_the_ui_shows_the_user_error_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Launched through the webserver's GraphQL mutation (the Launchpad's), dequeued as the daemon does, run by a
    run worker process."""
    root = not_images(tmp_path / "dataset")
    home = tmp_path / "home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLOPS_DATASET", str(root))  # the operator's dataset for runs launched from the UI
    monkeypatch.setenv(DEBUG_VARIABLE, "")
    for name, value in settings.export_environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(settings.PROJECT_ROOT)  # as `mlops dev`: the workspace's working directory is "."
    with (
        settings.open_instance() as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace_file())])) as process_context,
    ):
        context = process_context.create_request_context()
        assert context.get_code_location_error(LOCATION_NAME) is None
        launched = execute_dagster_graphql(
            context,
            LAUNCH_PIPELINE_EXECUTION_MUTATION,
            variables={
                "executionParams": {
                    "selector": {
                        "repositoryLocationName": LOCATION_NAME,
                        "repositoryName": "__repository__",
                        "pipelineName": PIPELINE_JOB_NAME,
                    },
                    "runConfigData": {},
                }
            },
        )
        assert launched.errors is None, launched.errors
        outcome = launched.data["launchPipelineExecution"]
        assert outcome["__typename"] == "LaunchRunSuccess", outcome
        run_id = outcome["run"]["runId"]
        # The run waits in the queue; one pass of the daemon `mlops dev` runs hands it to a run worker process.
        with QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon:
            list(daemon.run_iteration(process_context))
        deadline = time.monotonic() + LAUNCHED_RUN_DEADLINE_S
        while not instance.get_run_by_id(run_id).is_finished and time.monotonic() < deadline:
            time.sleep(1)
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        # Dagster's own ERROR lines name the steps it skipped; the step that failed has the user's message.
        assert [line for line in _error_lines(instance, run_id) if line[0] == "validated_images"] == [
            (
                "validated_images",
                f"validated_images failed: None of the 4 image files under {root} is accepted by the image policy "
                "of profile 'default'; convert or replace those files, or widen the profile's image_policy "
                f"settings. Examples: {UNDECODABLE.format(name='cat/0.png')}; {UNDECODABLE.format(name='cat/1.png')}; "
                f"{UNDECODABLE.format(name='dog/0.png')}",
            )
        ]


@dg.asset(check_specs=[dg.AssetCheckSpec("enough_images", asset="checked", blocking=True)])
def checked():
    yield dg.Output(None)
    yield dg.AssetCheckResult(check_name="enough_images", passed=False, description="3 images; at least 10 needed")


def test_the_console_names_the_blocking_checks_that_failed(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster's message puts the failed checks on lines after "...failed with ERROR severity:"; the console's one
    line keeps them."""
    monkeypatch.setenv(DEBUG_VARIABLE, "")
    job = dg.define_asset_job("checked_job", selection=[checked])
    defs = dg.Definitions(assets=[checked], jobs=[job], loggers={"console": console_logger})
    run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    assert not defs.resolve_job_def("checked_job").execute_in_process(run_config, raise_on_error=False).success
    lines = [line for line in capsys.readouterr().err.splitlines() if " - STEP_FAILURE - " in line]
    assert len(lines) == 1, lines
    assert lines[0].endswith("1 blocking asset check failed with ERROR severity: checked: enough_images"), lines


def test_only_a_failed_checks_heading_takes_the_lines_after_it() -> None:
    """A failed blocking check's message names the checks per asset on the lines after its heading; a user error's
    later lines (a server's log tail after "Last log lines:") are left to the event log."""
    from dagster._utils.error import SerializableErrorInfo

    from mlops_assets.defs.console_logger import user_error

    checks = SerializableErrorInfo(
        "2 blocking asset checks failed with ERROR severity:\nvalidated_images: enough_images,leakage\nbento: size\n",
        [],
        "DagsterAssetCheckFailedError",
    )
    assert user_error(checks) == (
        "2 blocking asset checks failed with ERROR severity: validated_images: enough_images,leakage; bento: size"
    )
    log_tail = SerializableErrorInfo(
        "The server did not start. Last log lines (server.log):\nTraceback ...\nValueError: boom\n",
        [],
        "DeploymentError",
    )
    assert user_error(log_tail) == "The server did not start. Last log lines (server.log):"
