"""The staged local flow through the registry, the `mlops` commands and the deployment assets, with real servers."""

import dataclasses
import json
import os
import signal
from pathlib import Path

import dagster as dg
import httpx
import pytest
import yaml

from mlops_assets import settings
from mlops_assets.cli import main
from mlops_assets.defs.deployment.assets import build_deployment_production, deployment_staging
from mlops_assets.defs.deployment.checks import production_matches_registry, staging_matches_registry
from mlops_assets.lib.deploy.canary import save_cases
from mlops_assets.lib.deploy.release import CanaryCase
from mlops_assets.lib.deploy.supervisor import free_port, port_is_free
from mlops_assets.lib.environment_settings import load_environment_settings
from mlops_assets.lib.registry.gate import GateDecision
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets.registry_home import open_registry
from mlops_assets.resources.deployer import deployer_for
from mlops_assets_tests.registry_helpers import new_version
from mlops_assets_tests.service_fixtures import API_KEY_ENV, predicted_label


def _local_settings(staging_port: int, production_port: int):
    """The shipped local settings with both stages on free ports and the served bento's API key variable."""
    found = settings.environment_settings("local")
    stages = found.deployments
    deployments = stages.model_copy(
        update={
            "staging": stages.staging.model_copy(update={"port": staging_port, "drain_timeout_s": 5.0}),
            "production": stages.production.model_copy(update={"port": production_port, "drain_timeout_s": 5.0}),
        }
    )
    serving = found.serving.model_copy(update={"api_key_env": API_KEY_ENV})
    return found.model_copy(update={"deployments": deployments, "serving": serving})


def _register(served, number_hint: int) -> int:
    """A registry version serving the served bento, gate passed, promoted to production (local: automatic)."""
    with open_registry() as models:
        number = models.register(
            dataclasses.replace(new_version(number_hint), bento_tag=served.bento_tag), actor="test"
        ).version.number
        models.record_gate(number, GateDecision(True, "test verdict"), f"run-{number_hint}")
        models.promote(number, "production", actor="test")
    return number


def _record_canary(served, number: int) -> CanaryCase:
    """The version's canary: held-out images and the served bento's own answers (what evaluation would record)."""
    directory = settings.deployments_dir() / "canary" / f"v{number}"
    directory.mkdir(parents=True)
    cases = []
    with served.client() as client:
        for index, (_, png) in enumerate(served.samples[:3]):
            path = directory / f"{index:03d}.png"
            path.write_bytes(png)
            answer = client.post("/predict", files={"images": (path.name, png, "image/png")}).json()
            cases.append(CanaryCase(str(path), str(answer["predictions"][0]["label"])))
    save_cases(directory, cases)
    return cases[0]


@pytest.fixture(scope="module")
def flow(served_bento, tmp_path_factory):
    """An own MLOPS_HOME (own registry, own alert log) reaching the session's bento store, local stages on free
    ports; every stage undeployed at the end."""
    home = tmp_path_factory.mktemp("deploy-home")
    (home / "bentoml").mkdir()
    for kind in ("bentos", "models"):
        (home / "bentoml" / kind).symlink_to(settings.bentoml_home() / kind, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        for variable in ("MLOPS_HOME", "DAGSTER_HOME", "BENTOML_HOME", "MLOPS_ENV"):
            patch.setenv(variable, os.environ.get(variable, ""))  # restored on exit, whatever export_environment sets
        patch.setenv("MLOPS_HOME", str(home))
        patch.setenv("MLOPS_ENV", "local")
        local = _local_settings(free_port(), free_port())
        shipped = settings.environment_settings
        patch.setattr(
            settings,
            "environment_settings",
            lambda environment=None: (
                local if (environment or settings.environment_name()) == "local" else shipped(environment)
            ),
        )
        settings.export_environment()
        try:
            yield served_bento, local
        finally:
            for stage in ("staging", "production"):
                deployer_for(stage, local).undeploy()


@pytest.mark.e2e
def test_staged_flow_through_registry_cli_and_assets(flow, capsys):
    served, local = flow
    staging_url = f"http://127.0.0.1:{local.deployments.staging.port}"
    production_url = f"http://127.0.0.1:{local.deployments.production.port}"
    v1 = _register(served, 1)
    case = _record_canary(served, v1)
    png = Path(case.image_path).read_bytes()

    # Production before staging's canary passed on the version: refused, nothing started, an alert written.
    assert main(["deploy", "production"]) == 1
    assert capsys.readouterr().err == (
        f"error: Version {v1} has not passed its canary in staging; deploy it there first "
        f"(`mlops deploy staging --version {v1}`).\n"
    )
    alerts = [json.loads(line) for line in (settings.mlops_home() / "alerts" / "alerts.jsonl").read_text().splitlines()]
    assert [(a["kind"], a["details"]["stage"]) for a in alerts] == [("deployment failed", "production")]
    assert alerts[0]["title"].startswith(f"deployment of production failed: Version {v1} has not passed")

    # A dry run says what would serve and starts nothing.
    assert main(["deploy", "staging", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Dry run: nothing was started or changed. It would serve:\n")
    assert f"staging: version {v1} ({served.bento_tag}) at {staging_url} [local]" in out
    assert port_is_free("127.0.0.1", local.deployments.staging.port) is True
    assert deployer_for("staging", local).status() is None

    # Staging (local promotion is automatic: it takes the production version), then production.
    assert main(["deploy", "staging"]) == 0
    assert "  canary: 3/3 matched at " in capsys.readouterr().out
    assert predicted_label(staging_url, png) == case.expected_label

    # Deploying the live, healthy version again changes nothing; --force restarts it.
    def serving_pid() -> int:
        return deployer_for("staging", local)._load().revisions[f"v{v1}"].server.pid

    first_pid = serving_pid()
    assert main(["deploy", "staging"]) == 0
    assert capsys.readouterr().out == (
        f"Version {v1} is already live in staging at {staging_url}; nothing was changed. "
        "`mlops deploy staging --force` restarts it.\n"
    )
    assert serving_pid() == first_pid
    assert main(["deploy", "staging", "--force"]) == 0
    forced = capsys.readouterr().out
    assert forced.startswith(
        f"Restarted version {v1} in staging (--force): a new server replaced the one that served it, at the same "
        f"URLs.\nstaging: version {v1} ({served.bento_tag}) at {staging_url} [local]\n"
    )
    assert "  canary: 3/3 matched at " in forced
    assert serving_pid() != first_pid
    assert predicted_label(staging_url, png) == case.expected_label
    assert main(["deploy", "production"]) == 0
    capsys.readouterr()
    assert predicted_label(production_url, png) == case.expected_label
    assert predicted_label(f"{production_url}/v{v1}", png) == case.expected_label

    assert main(["deployments"]) == 0
    listed = capsys.readouterr().out
    assert f"staging: version {v1} ({served.bento_tag}) at {staging_url} [local]" in listed
    assert f"production: version {v1} ({served.bento_tag}) at {production_url} [local]" in listed
    assert f"  pinned v{v1}: {production_url}/v{v1}" in listed
    assert listed.count("  health: ok\n") == 2
    assert "warning:" not in listed

    # The assets through Dagster: both versions already live, so they record what serves without restarting it.
    assets = [deployment_staging, build_deployment_production("manual")]
    checks = [staging_matches_registry, production_matches_registry]
    result = dg.materialize([*assets, *checks], instance=dg.DagsterInstance.ephemeral())
    assert result.success
    for stage, url in (("staging", staging_url), ("production", production_url)):
        metadata = result.asset_materializations_for_node(f"deployment_{stage}")[0].metadata
        assert metadata["model_version"].value == v1
        assert metadata["bento_tag"].value == served.bento_tag
        assert metadata["url"].value == url
        assert metadata["revision"].value == f"v{v1}"
        assert metadata["traffic"].value == f"v{v1} 100%"
        assert metadata["canary"].value.startswith("3/3 matched at http://127.0.0.1:")
        assert metadata["redeployed"].value is False
    assert [(e.check_name, e.passed) for e in result.get_asset_check_evaluations()] == [
        ("staging_matches_registry", True),
        ("production_matches_registry", True),
    ]

    # A newer version promoted in the registry: both checks say what is live and what to run.
    v2 = _register(served, 2)
    _record_canary(served, v2)
    check = production_matches_registry()
    assert check.passed is False
    assert check.description == (
        f"Version {v2} is due in production (the registry's production version), but version {v1} is live at "
        f"{production_url}; deploy it with `mlops deploy production` (or `mlops models rollback` if version {v1} "
        "should stay)."
    )
    assert staging_matches_registry().passed is False
    assert main(["deployments"]) == 0
    listed = capsys.readouterr().out
    assert (
        f"  warning: Version {v2} is due in production (the registry's production version), but version {v1} is "
        f"live at {production_url}; deploy it with `mlops deploy production` (or `mlops models rollback` if version "
        f"{v1} should stay).\n"
    ) in listed

    # Materializing staging deploys the new version; production still serves v1 and its check keeps failing.
    result = dg.materialize([deployment_staging, staging_matches_registry], instance=dg.DagsterInstance.ephemeral())
    metadata = result.asset_materializations_for_node("deployment_staging")[0].metadata
    assert (metadata["model_version"].value, metadata["redeployed"].value) == (v2, True)
    assert metadata["previous_revision"].value == f"v{v1}"
    assert [(e.check_name, e.passed) for e in result.get_asset_check_evaluations()] == [
        ("staging_matches_registry", True)
    ]
    assert production_matches_registry().passed is False

    # Rollback to a disabled version is refused before anything changes; staging keeps serving v2.
    with open_registry() as models:
        models.disable(v1, actor="test", reason="misreads sevens")
    capsys.readouterr()  # the materialization's log lines
    assert main(["rollback", "staging"]) == 1
    assert capsys.readouterr().err == (
        f"error: Version {v1} is disabled in the registry, so the main URL does not go back to it; nothing was "
        f"changed. Enable it (`mlops models enable {v1}`) or deploy another version "
        "(`mlops deploy STAGE --version N`).\n"
    )
    assert deployer_for("staging", local).status().revision == f"v{v2}"
    assert httpx.get(f"{staging_url}/-/routes", timeout=10).json()["traffic"][0]["revision"] == f"v{v2}"
    with open_registry() as models:
        models.enable(v1, actor="test")
    assert main(["rollback", "staging"]) == 0
    rolled = capsys.readouterr().out
    assert rolled.startswith(f"staging: version {v1} ({served.bento_tag}) at {staging_url} [local]\n")
    assert f"  previous: v{v2} (still reachable at its pinned URL)" in rolled
    assert predicted_label(f"{staging_url}/v{v2}", png) == case.expected_label


def test_plan_for_the_shipped_configs(monkeypatch, capsys):
    monkeypatch.setenv("MLOPS_ENV", "production")
    assert main(["deploy", "production", "--plan"]) == 0
    plan = capsys.readouterr().out
    assert plan.startswith("production: Cloud Run service image-classifier in europe-west4\n")
    assert "  per instance: nvidia-l4, 8 vCPU, 32Gi, zonal redundancy on: $" in plan
    monkeypatch.setenv("MLOPS_ENV", "local")
    assert main(["deploy", "production", "--plan"]) == 0
    assert capsys.readouterr().out == "production: target local: served on this machine, no Cloud Run cost.\n"


def test_shipped_local_stages_and_stage_settings_refused_when_loaded(tmp_path):
    local_file = settings.PROJECT_ROOT / "deployments" / "local.yaml"
    shipped = load_environment_settings(local_file, "local").deployments
    assert (shipped.staging.target, shipped.staging.port, shipped.staging.after) == ("local", 3100, None)
    assert (shipped.production.port, shipped.production.after, shipped.production.rollout) == (
        3130,
        "staging",
        "automatic",
    )
    content = yaml.safe_load(local_file.read_text())
    content["deployments"]["production"]["port"] = 3100
    content["deployments"]["staging"]["cloud_run"] = {"service": "classifier"}
    content["deployments"]["staging"]["after"] = "staging"
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as refused:
        load_environment_settings(path, "local")
    assert str(refused.value) == (
        f"{path}: deployments.staging.cloud_run: set, but target = 'local'; set target: cloud_run or remove it; "
        "deployments.staging.after = 'staging': a stage cannot wait for itself; "
        "deployments.production.port = 3100: the same port as deployments.staging.port; each local stage needs its own"
    )
    content["deployments"]["staging"] = {"target": "cloud_run", "cloud_run": {"service": "classifier", "cpu": "4"}}
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as refused:
        load_environment_settings(path, "local")
    assert str(refused.value) == f"{path}: deployments.staging.cloud_run.cpu = '4': expected a number > 0"


@pytest.mark.e2e
def test_deploy_local_with_a_killed_leader_stops_the_workers_left_serving(flow):
    served, _ = flow
    from mlops_assets.resources.local_deployer import current_deployment, deploy_local, stop_local

    port = free_port()
    first = deploy_local(served.bento_tag, port=port)
    os.kill(first.pid, signal.SIGKILL)
    # The leader is gone; its workers keep the port. The deployment still counts as running, so it can be stopped.
    assert port_is_free("127.0.0.1", port) is False
    assert current_deployment() == first
    second = deploy_local(served.bento_tag, port=port)
    assert second.pid != first.pid
    with pytest.raises(ProcessLookupError):
        os.killpg(first.pid, 0)
    png = served.samples[0][1]
    with served.client() as client:
        expected = client.post("/predict", files={"images": ("x.png", png, "image/png")}).json()
    assert predicted_label(second.url, png) == str(expected["predictions"][0]["label"])
    assert stop_local() == second
    assert port_is_free("127.0.0.1", port) is True
