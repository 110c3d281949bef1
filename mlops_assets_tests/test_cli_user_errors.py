"""A step failing with a user error (here a DatasetError) is one line on the console, without Dagster's stack trace;
`--debug` prints the trace, and the run's event log keeps it."""

import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.cli import FAILED, main
from mlops_assets.defs.console_logger import console_logger
from mlops_assets.lib.errors import DEBUG_VARIABLE, DatasetError
from mlops_assets_tests.cli_processes import MLOPS, not_images

NOT_IMAGES = (
    "mlops_assets.lib.errors.DatasetError: None of the 4 image files under {root} is accepted by the image policy of "
    "profile 'default'; convert or replace those files, or widen the profile's image_policy settings."
)


@pytest.mark.e2e
def test_a_user_error_in_a_step_is_one_console_line_without_a_stack_trace(tmp_path: Path) -> None:
    root = not_images(tmp_path / "dataset")
    env = {key: value for key, value in os.environ.items() if key not in ("DAGSTER_HOME", "BENTOML_HOME")}
    completed = subprocess.run(
        [MLOPS, "run", "--dataset", str(root)],
        env={**env, "MLOPS_HOME": str(tmp_path / "home"), DEBUG_VARIABLE: ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == FAILED
    failure = NOT_IMAGES.format(root=root)
    assert f"step validated_images failed: {failure}" in completed.stdout.splitlines()[-1]
    assert "Traceback" not in completed.stderr and "Stack Trace" not in completed.stderr, completed.stderr
    step_failures = [line for line in completed.stderr.splitlines() if " - STEP_FAILURE - " in line]
    assert [line.split(" - STEP_FAILURE - ")[1] for line in step_failures] == [
        f'Execution of step "validated_images" failed. {failure} Examples: cat/0.png: cannot be decoded: The bytes '
        "are not a recognised image; send an image file (PNG, JPEG, WebP, BMP, TIFF or GIF).; cat/1.png: cannot be "
        "decoded: The bytes are not a recognised image; send an image file (PNG, JPEG, WebP, BMP, TIFF or GIF).; "
        "dog/0.png: cannot be decoded: The bytes are not a recognised image; send an image file (PNG, JPEG, WebP, "
        "BMP, TIFF or GIF)."
    ]


def test_debug_prints_the_stack_trace_and_the_event_log_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    root = not_images(tmp_path / "dataset")
    monkeypatch.delenv("MLOPS_DATASET", raising=False)
    monkeypatch.setenv(DEBUG_VARIABLE, "")
    # A home of its own: the run makes its dataset the home's current one, which later tests must not inherit. The
    # variables the CLI points at the home are restored afterwards.
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    for variable in ("DAGSTER_HOME", "BENTOML_HOME"):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))
    assert main(["--debug", "run", "--dataset", str(root)]) == FAILED
    err = capsys.readouterr().err
    assert "Stack Trace:" in err and "in validated_images\n" in err
    assert "raise DatasetError(" in err

    with dg.DagsterInstance.get() as instance:
        run = instance.get_run_records(limit=1)[0].dagster_run
        failures = [
            event.dagster_event for event in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        ]
    assert [failure.step_key for failure in failures] == ["validated_images"]
    error = failures[0].event_specific_data.error
    assert error.cause.cls_name == "DatasetError" and error.cause.stack  # the whole trace stays in the run


def test_a_bug_keeps_its_stack_trace_on_the_console(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DEBUG_VARIABLE, "")

    @dg.asset
    def refused() -> None:
        raise DatasetError("the data says no")

    @dg.asset
    def buggy() -> None:
        raise KeyError("a bug")

    for asset in (refused, buggy):
        job = dg.define_asset_job(f"{asset.key.path[0]}_job", selection=[asset])
        defs = dg.Definitions(assets=[asset], jobs=[job], loggers={"console": console_logger})
        # As `mlops` runs configure it (Dagster's default logger is used where run config names no logger).
        run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
        assert not defs.resolve_job_def(job.name).execute_in_process(run_config, raise_on_error=False).success
    err = capsys.readouterr().err
    refused_failure, buggy_failure = err.split(' - STEP_FAILURE - Execution of step "')[1:3]
    assert refused_failure.split("\n")[0] == 'refused" failed. mlops_assets.lib.errors.DatasetError: the data says no'
    assert "Stack Trace:" not in refused_failure.split(" - RUN_FAILURE - ")[0]
    assert buggy_failure.startswith('buggy" failed.\n\ndagster._core.errors.DagsterExecutionStepExecutionError')
    assert "KeyError: 'a bug'" in buggy_failure and "Stack Trace:" in buggy_failure


def test_the_hint_to_stop_a_server_names_the_command_as_the_user_can_call_it(tmp_path, monkeypatch) -> None:
    import shutil
    import sys

    from mlops_assets.cli import _invoked_as

    program = tmp_path / ".venv" / "bin" / "mlops"
    program.parent.mkdir(parents=True)
    program.write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(program), "demo"])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert _invoked_as() == ".venv/bin/mlops"  # `make demo` runs it from the project folder, off the PATH
    monkeypatch.setattr(shutil, "which", lambda name: str(program))
    assert _invoked_as() == "mlops"  # on the PATH (an activated virtual environment)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.chdir(program.parent)
    assert _invoked_as() == "./mlops"  # run from its own folder: a bare name would be looked up on PATH
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert _invoked_as() == str(program)  # outside that folder: the whole path
