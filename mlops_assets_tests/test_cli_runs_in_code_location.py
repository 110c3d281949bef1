"""Runs started by `mlops run`/`rebuild` belong to the code location: the UI lists them under the job, like its own."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster_graphql.test.utils import execute_dagster_graphql

from mlops_assets import settings
from mlops_assets.code_location import LOCATION_NAME, code_location_job, workspace_file
from mlops_assets.definitions import build_definitions
from mlops_assets.defs.jobs import PIPELINE_JOB_NAME
from mlops_assets.defs.promotion.jobs import registry_jobs
from mlops_assets.lib.errors import MLOpsError

MLOPS = str(Path(sys.executable).parent / "mlops")
REPOSITORY_LABEL = f"__repository__@{LOCATION_NAME}"

# The job page's Runs tab asks for runs of the job name tagged with the repository label; the timeline places a
# run by its repository origin. `runs` on the job is the same filter, resolved by the server from the loaded job.
JOB_RUNS_QUERY = """
query JobRuns($selector: PipelineSelector!, $filter: RunsFilter!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { runs { runId } }
  }
  runsOrError(filter: $filter) {
    __typename
    ... on Runs {
      results {
        runId
        pipelineName
        status
        tags { key value }
        repositoryOrigin { repositoryLocationName repositoryName }
      }
    }
  }
}
"""


def _mlops(home: Path, *args: str) -> str:
    env = {**os.environ, "MLOPS_HOME": str(home)}
    for key in ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME"):
        env.pop(key, None)
    completed = subprocess.run([MLOPS, *args], env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def test_every_job_runs_its_steps_in_the_run_process() -> None:
    defs = build_definitions()
    jobs = [defs.resolve_job_def(name) for name in (PIPELINE_JOB_NAME, *(job.name for job in registry_jobs()))]
    jobs.append(defs.resolve_implicit_global_asset_job_def())  # what the UI's "Materialize" and automation launch
    assert {job.name: job.executor_def for job in jobs} == {job.name: dg.in_process_executor for job in jobs}
    assert dg.in_process_executor.name == "in_process"


def test_a_missing_or_renamed_code_location_is_an_error_that_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = workspace_file().read_text()
    monkeypatch.setattr(settings, "PROJECT_ROOT", tmp_path)
    with pytest.raises(MLOpsError) as missing:
        code_location_job(PIPELINE_JOB_NAME)
    assert str(missing.value) == (
        f"{tmp_path / 'workspace.yaml'} is missing; it defines the Dagster code location 'mlops_assets' that runs "
        "belong to. Restore it from the project (`python_module: mlops_assets.definitions`)."
    )
    renamed = workspace.replace(f"location_name: {LOCATION_NAME}", "location_name: other")
    assert renamed != workspace
    (tmp_path / "workspace.yaml").write_text(renamed)
    with pytest.raises(MLOpsError) as wrong_name:
        code_location_job(PIPELINE_JOB_NAME)
    assert str(wrong_name.value) == (
        f"{tmp_path / 'workspace.yaml'} defines no `python_module` code location named 'mlops_assets' (it has "
        "['other']); name the location that loads mlops_assets.definitions 'mlops_assets'."
    )


@pytest.mark.e2e
def test_cli_runs_are_listed_under_the_job_of_the_code_location(
    tmp_path: Path, digits_subset: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    config = tmp_path / "fast.yaml"
    config.write_text("ops: {trained_model: {config: {epochs: 3}}}\n")
    common = ("--dataset", str(digits_subset), "--config", str(config))

    rebuilt = _mlops(home, "rebuild", *common)
    assert rebuilt.splitlines()[-1] == (
        "Materialized 7 assets: raw_images, validated_images, trained_model, model_evaluation, monitoring_baseline,"
        " bento, model_promotion"
    )
    ran = _mlops(home, "run", *common)
    assert "SUCCESS" in ran.splitlines()[0]
    # Still only what is stale: nothing, so no run.
    assert _mlops(home, "rebuild", *common).strip() == "Everything is up to date: nothing materialized."

    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.chdir(settings.PROJECT_ROOT)  # as `mlops dev`: the workspace's working directory is "."
    with (
        dg.DagsterInstance.get() as instance,
        # The webserver's own loading of workspace.yaml (a code server process for the location).
        WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace_file())])) as process_context,
    ):
        context = process_context.create_request_context()
        assert context.get_code_location_error(LOCATION_NAME) is None
        result = execute_dagster_graphql(
            context,
            JOB_RUNS_QUERY,
            variables={
                "selector": {
                    "repositoryLocationName": LOCATION_NAME,
                    "repositoryName": "__repository__",
                    "pipelineName": PIPELINE_JOB_NAME,
                },
                "filter": {
                    "pipelineName": PIPELINE_JOB_NAME,
                    "tags": [{"key": ".dagster/repository", "value": REPOSITORY_LABEL}],
                },
            },
        )
        all_run_ids = [record.dagster_run.run_id for record in instance.get_run_records()]
    assert result.errors is None, result.errors
    runs = result.data["runsOrError"]["results"]
    assert [
        (
            run["pipelineName"],
            run["status"],
            {tag["key"]: tag["value"] for tag in run["tags"]}["launched_by"],
            run["repositoryOrigin"],
        )
        for run in runs
    ] == [
        (
            PIPELINE_JOB_NAME,
            "SUCCESS",
            launcher,
            {"repositoryLocationName": LOCATION_NAME, "repositoryName": "__repository__"},
        )
        for launcher in ("mlops run", "mlops rebuild")  # newest first
    ]
    assert [run["runId"] for run in result.data["pipelineOrError"]["runs"]] == [run["runId"] for run in runs]
    assert sorted(all_run_ids) == sorted(run["runId"] for run in runs)  # no orphan runs besides them
