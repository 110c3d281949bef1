"""`mlops deploy` argument refusals (exit 2, nothing started) and `mlops deployments` wording, without a bento."""

import os

import httpx
import pytest

from mlops_assets import settings
from mlops_assets.cli import main
from mlops_assets.lib.deploy.supervisor import free_port, port_is_free
from mlops_assets.lib.registry.gate import GateDecision
from mlops_assets.registry_home import open_registry
from mlops_assets.resources.local_deployer import current_deployment
from mlops_assets.resources.local_target import LocalDeployer, StageState
from mlops_assets_tests.registry_helpers import new_version

LOCAL = "deployments/local.yaml"


@pytest.fixture
def own_home(tmp_path, monkeypatch):
    """An empty MLOPS_HOME with its own SQLite registry and the shipped local environment file."""
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLOPS_ENV", "local")
    for variable in ("DAGSTER_HOME", "BENTOML_HOME", "MLOPS_REGISTRY_URL"):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))  # restored, whatever the command exports
    monkeypatch.delenv("MLOPS_REGISTRY_URL")
    return tmp_path / "home"


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (
            ["deploy", "staging", "--bento", "foo:bar"],
            "--bento = 'foo:bar': only `mlops deploy local` takes it; staging serves the bento of the registry's "
            f"version for staging (or --version N) with the settings of deployments.staging in {LOCAL}",
        ),
        (
            ["deploy", "staging", "--port", "5"],
            f"--port = 5: only `mlops deploy local` takes it; staging takes its port from deployments.staging.port in "
            f"{LOCAL}",
        ),
        (
            ["deploy", "production", "--port", "3130", "--version", "0"],
            "--port = 3130: only `mlops deploy local` takes it; production takes its port from "
            f"deployments.production.port in {LOCAL}; --version = 0: expected an integer >= 1",
        ),
        (
            ["deploy", "production", "--plan", "--force", "--version", "2"],
            "--plan only prints production's estimated cost and deploys nothing; leave out --force and --version 2 "
            "or --plan",
        ),
        (
            ["deploy", "local", "--plan"],
            "--plan is for the stages (staging, production); `mlops deploy local` starts one server on this machine "
            "and has no cost or dry run. Leave out the flag, or use `mlops deploy staging --plan`",
        ),
        (
            ["deploy", "local", "--dry-run"],
            "--dry-run is for the stages (staging, production); `mlops deploy local` starts one server on this "
            "machine and has no cost or dry run. Leave out the flag, or use `mlops deploy staging --dry-run`",
        ),
        (
            ["deploy", "local", "--version", "1", "--force"],
            "--version = 1: only the stages (staging, production) take it; `mlops deploy local` serves a bento "
            "(--bento TAG, default: the production version's); --force is for the stages (staging, production); "
            "`mlops deploy local` always starts its server anew",
        ),
        (
            ["deploy", "local", "--port", "3000"],
            "--port = 3000: port 3000 is the Dagster UI's (`mlops dev`); choose another port",
        ),
        (
            ["demo", "--port", "3130"],
            f"--port = 3130: port 3130 is the production stage's URL (deployments.production.port in {LOCAL}); "
            "choose another port",
        ),
        (
            ["deploy", "local", "--port", "3100"],
            f"--port = 3100: port 3100 is the staging stage's URL (deployments.staging.port in {LOCAL}); choose "
            "another port",
        ),
        (
            ["deploy", "local", "--port", "3130"],
            f"--port = 3130: port 3130 is the production stage's URL (deployments.production.port in {LOCAL}); "
            "choose another port",
        ),
    ],
)
def test_refused_arguments_exit_2_with_one_line_and_start_nothing(own_home, capsys, argv, problem):
    assert main(argv) == 2
    assert capsys.readouterr() == ("", f"error: command line: {problem}\n")
    assert current_deployment() is None
    assert not (own_home / "deployments").exists()  # no stage state, no canary, no alert
    assert not (own_home / "alerts").exists()


@pytest.mark.e2e
def test_deploy_local_refuses_the_port_a_live_stage_router_recorded(own_home, capsys):
    """A stage still live on a port the environment file no longer names (it was changed since) keeps it."""
    found = settings.environment_settings("local")
    old_port = free_port()
    moved = found.deployments.staging.model_copy(update={"port": old_port})
    live = LocalDeployer(
        "staging", found.model_copy(update={"deployments": found.deployments.model_copy(update={"staging": moved})})
    )
    state = StageState()
    live._publish_routes(state)  # the stage's router on its recorded address
    live._save(state)
    try:
        assert main(["deploy", "local", "--port", str(old_port)]) == 2
        assert capsys.readouterr().err == (
            f"error: command line: --port = {old_port}: port {old_port} is where the staging stage's router listens; "
            "choose another port\n"
        )
        assert httpx.get(f"http://127.0.0.1:{old_port}/-/routes", timeout=10).status_code == 200
        assert current_deployment() is None
    finally:
        live.undeploy()
    assert port_is_free("127.0.0.1", old_port) is True


def test_deployments_names_where_the_due_version_comes_from(own_home, capsys):
    """Local promotion is automatic: staging takes the production version, which `mlops models list` shows as
    production only, so the warning says so instead of claiming the registry has it in staging."""
    with open_registry() as models:
        number = models.register(new_version(1), actor="test").version.number
        models.record_gate(number, GateDecision(True, "test verdict"), "run-1")
        models.promote(number, "production", actor="test")
    assert main(["deployments"]) == 0
    assert capsys.readouterr().out == (
        "staging: nothing deployed\n"
        f"  warning: Nothing is deployed in staging; version {number} is due there (the registry's production "
        "version; staging follows production under the automatic promotion policy); deploy it with "
        "`mlops deploy staging`.\n"
        "production: nothing deployed\n"
        f"  warning: Nothing is deployed in production; version {number} is due there (the registry's production "
        "version); deploy it with `mlops deploy production`.\n"
        "local: nothing running (`mlops deploy local` starts a server)\n"
    )


def test_deployments_says_when_the_local_server_is_gone_or_its_record_is_damaged(own_home, capsys):
    """A local server that died keeps its record, listed with where its log is and how to start it again; a damaged
    record is named, and the stages are still reported."""
    import json
    import subprocess
    import sys

    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone_pid = int(exited.stdout)  # a process that has exited: its pid runs nothing of this deployment
    record = settings.deployments_dir() / "local.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(
        json.dumps(
            {"bento_tag": "image-classifier-service:abc", "url": "http://127.0.0.1:3999", "pid": gone_pid,
             "log_path": "/var/log/server.log", "workers": []}
        )
    )  # fmt: skip
    assert main(["deployments"]) == 0
    assert capsys.readouterr().out.endswith(
        f"local: image-classifier-service:abc at http://127.0.0.1:3999 (`mlops deploy local`, pid {gone_pid})\n"
        "  health: not running: its processes are gone (its log: /var/log/server.log); `mlops deploy local --bento "
        "image-classifier-service:abc` starts it again\n"
    )
    record.write_text('{"bento_tag": "image-classifier-service:abc", "url": ')
    assert main(["deployments"]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("staging: nothing deployed\nproduction: nothing deployed\n"), listed
    assert listed.endswith(
        f"local: nothing running (`mlops deploy local` starts a server)\n  health: The local deployment's record "
        f"{record} is damaged (Expecting value: line 1 column 54 (char 53)); delete it, and stop the `bentoml "
        "serve` process it recorded yourself if one still runs.\n"
    ), listed
