"""The local deployment target with real processes: BentoML servers per revision behind the stage's router."""

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from mlops_assets import settings
from mlops_assets.lib.deploy.release import CanaryCase, DeploymentError, Release, TrafficShare
from mlops_assets.lib.deploy.supervisor import free_port, group_alive, port_is_free
from mlops_assets.resources.local_target import LocalDeployer
from mlops_assets_tests.service_fixtures import API_KEY, API_KEY_ENV, canary_cases, predicted_label

pytestmark = pytest.mark.e2e


def _settings(staging_port: int, host: str = "127.0.0.1", api_key_env: str = API_KEY_ENV):
    found = settings.environment_settings("local")
    deployments = found.deployments.model_copy(
        update={
            "staging": found.deployments.staging.model_copy(
                update={"port": staging_port, "host": host, "ready_timeout_s": 120.0, "drain_timeout_s": 10.0}
            )
        }
    )
    serving = found.serving.model_copy(update={"api_key_env": api_key_env})
    return found.model_copy(update={"deployments": deployments, "serving": serving})


class ClientLoop:
    """Requests /predict through the stage's URL without pause in a thread; counts answers by status."""

    def __init__(self, url: str, image: bytes) -> None:
        self.url, self.image = url, image
        self.statuses: list[int | str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            while not self._stop.is_set():
                try:
                    answer = client.post("/predict", files={"images": ("x.png", self.image, "image/png")})
                    self.statuses.append(answer.status_code)
                except httpx.TransportError as error:
                    self.statuses.append(type(error).__name__)

    def __enter__(self) -> "ClientLoop":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=90)


@pytest.fixture(scope="module")
def stage(served_bento, tmp_path_factory):
    """A staging stage on a free port, its canary the served bento's own answers for held-out test images."""
    directory = tmp_path_factory.mktemp("canary")
    cases = canary_cases(served_bento, directory)
    deployer = LocalDeployer("staging", _settings(free_port()))
    yield deployer, cases, served_bento
    deployer.undeploy()


def test_deploy_switch_refusals_pinning_rollback(stage):
    deployer, cases, served = stage
    png = Path(cases[0].image_path).read_bytes()

    first = deployer.deploy(Release("staging", 1, served.bento_tag, cases))
    assert (first.revision, first.model_version, first.bento_tag, first.url) == (
        "v1",
        1,
        served.bento_tag,
        deployer.url,
    )
    assert first.traffic == (TrafficShare("v1", 100),)
    assert first.revision_urls == {"v1": f"{deployer.url}/v1"}
    assert (first.canary.sent, first.canary.matched, first.previous_revision) == (4, 4, None)
    assert predicted_label(deployer.url, png) == cases[0].expected_label

    # A switch under load: the client loop through the stage's URL sees no failed request.
    with ClientLoop(deployer.url, png) as loop:
        second = deployer.deploy(Release("staging", 2, served.bento_tag, cases))
        time.sleep(1)
    assert set(loop.statuses) == {200}, loop.statuses
    assert (second.revision, second.previous_revision) == ("v2", "v1")
    assert second.revision_urls == {"v1": f"{deployer.url}/v1", "v2": f"{deployer.url}/v2"}
    routes = httpx.get(f"{deployer.url}/-/routes").json()
    state = deployer._load()
    assert [entry["upstream"] for entry in routes["traffic"]] == [state.revisions["v2"].server.url]
    # The older version stays pinned at its own URL after the newer one took the main URL.
    assert predicted_label(f"{deployer.url}/v1", png) == cases[0].expected_label

    # A bento missing from the store is refused before a server starts, saying how to get it back; v2 keeps
    # answering without a failed request.
    with ClientLoop(deployer.url, png) as loop, pytest.raises(DeploymentError) as refused:
        deployer.deploy(Release("staging", 3, "image-classifier-service:no-such-bento", cases))
    assert str(refused.value) == (
        f"Bento image-classifier-service:no-such-bento is not in the BentoML store at {settings.bentoml_home()}; "
        "nothing was started or stopped. Put the model of version 3 back with `mlops models restore 3` and rebuild "
        "the bento with `mlops run`, or deploy another version."
    )
    assert not (settings.logs_dir() / f"deploy-{deployer.environment}-staging-v3.log").exists()
    assert set(loop.statuses) == {200}, loop.statuses
    assert deployer.status().revision == "v2"

    # A revision whose canary answers differ from the recorded predictions is refused and stopped.
    wrong = tuple(CanaryCase(case.image_path, "not-a-label") for case in cases)
    with ClientLoop(deployer.url, png) as loop, pytest.raises(DeploymentError) as refused:
        deployer.deploy(Release("staging", 4, served.bento_tag, wrong))
    assert "The canary of v4 failed: 0 of 4 answers matched" in str(refused.value)
    assert "expected 'not-a-label'" in str(refused.value)
    assert set(loop.statuses) == {200}, loop.statuses
    assert sorted(deployer._load().revisions) == ["v1", "v2"]

    # Rollback: the main URL goes back to v1, v2 stays pinned.
    back = deployer.rollback()
    assert (back.revision, back.model_version, back.previous_revision) == ("v1", 1, "v2")
    assert back.traffic == (TrafficShare("v1", 100),)
    assert predicted_label(deployer.url, png) == cases[0].expected_label
    assert predicted_label(f"{deployer.url}/v2", png) == cases[0].expected_label

    # The leader of v2 is killed while its workers keep the port: health says so, undeploy stops the whole group.
    v2 = deployer._load().revisions["v2"].server
    os.kill(v2.pid, signal.SIGKILL)
    time.sleep(1)
    assert group_alive(v2) is True
    assert any(problem.startswith("v2 (pid") for problem in deployer.health()), deployer.health()
    deployer.undeploy()
    assert group_alive(v2) is False
    assert port_is_free("127.0.0.1", v2.port) is True
    assert port_is_free("127.0.0.1", deployer.config.port) is True
    assert deployer.status() is None


def test_port_in_use_refused_before_anything_starts(stage):
    _, cases, served = stage
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        deployer = LocalDeployer("staging", _settings(port))
        deployer.directory = deployer.directory.parent / "port-test"
        with pytest.raises(DeploymentError) as refused:
            deployer.deploy(Release("staging", 1, served.bento_tag, cases))
    assert f"Port {port} on 127.0.0.1 (the staging stage's URL) is in use" in str(refused.value)
    assert "nothing was stopped" in str(refused.value)
    assert deployer._load().revisions == {}


def test_non_loopback_without_key_refused(stage, monkeypatch):
    _, cases, served = stage
    monkeypatch.delenv("MLOPS_UNSET_KEY_FOR_TEST", raising=False)
    deployer = LocalDeployer("staging", _settings(free_port(), host="0.0.0.0", api_key_env="MLOPS_UNSET_KEY_FOR_TEST"))
    with pytest.raises(DeploymentError) as refused:
        deployer.deploy(Release("staging", 1, served.bento_tag, cases))
    assert "deployments.staging.host is '0.0.0.0'" in str(refused.value)
    assert "MLOPS_UNSET_KEY_FOR_TEST is not set" in str(refused.value)


def test_deploy_local_without_a_production_version_is_an_error_line(tmp_path, monkeypatch, capsys):
    from mlops_assets.cli import main

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    for variable in ("DAGSTER_HOME", "BENTOML_HOME", "MLOPS_REGISTRY_URL"):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))  # restored, whatever the command exports
    monkeypatch.delenv("MLOPS_REGISTRY_URL")
    assert main(["deploy", "local", "--port", str(free_port())]) == 1
    assert capsys.readouterr().err == (
        "error: No version is in production; `mlops run` or `mlops models promote N` first.\n"
    )


def test_deploy_local_with_a_bento_the_store_lacks_is_one_error_line(tmp_path, monkeypatch, capsys):
    from mlops_assets.cli import main
    from mlops_assets.resources.local_deployer import current_deployment

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    for variable in ("DAGSTER_HOME", "BENTOML_HOME", "MLOPS_REGISTRY_URL"):
        monkeypatch.setenv(variable, os.environ.get(variable, ""))  # restored, whatever the command exports
    monkeypatch.delenv("MLOPS_REGISTRY_URL")
    port = free_port()
    assert main(["deploy", "local", "--bento", "image-classifier-service:no-such-bento", "--port", str(port)]) == 1
    assert capsys.readouterr().err == (
        "error: Bento image-classifier-service:no-such-bento is not in the BentoML store at "
        f"{tmp_path / 'home' / 'bentoml'}; nothing was started or stopped. Put the model of its version "
        "(`mlops models list`) back with `mlops models restore N` and rebuild the bento with `mlops run`, or deploy "
        "another version.\n"
    )
    assert (current_deployment(), port_is_free("127.0.0.1", port)) == (None, True)


def _refused_local_settings(tmp_path, edit) -> tuple[Path, str]:
    """deployments/local.yaml with `edit(content)` applied, written to `tmp_path`: its path and the ConfigError that
    loading it raises."""
    import yaml

    from mlops_assets.lib.environment_settings import load_environment_settings
    from mlops_assets.lib.settings_validation import ConfigError

    content = yaml.safe_load((settings.PROJECT_ROOT / "deployments" / "local.yaml").read_text())
    edit(content)
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(ConfigError) as refused:
        load_environment_settings(path, "local")
    return path, str(refused.value)


@pytest.mark.parametrize(
    ("staging_port", "production_port", "problems"),
    [
        (
            3030,
            3000,
            "deployments.staging.port = 3030: the same port as server.port (`mlops deploy local`); each needs its "
            "own; deployments.production.port = 3000: the same port as the Dagster UI (`mlops dev`); each needs its "
            "own",
        ),
        (
            3100,
            3100,
            "deployments.production.port = 3100: the same port as deployments.staging.port; each local stage needs "
            "its own",
        ),
    ],
)
def test_a_stage_port_another_server_of_the_project_binds_is_refused_when_loaded(
    tmp_path, staging_port, production_port, problems
):
    def edit(content: dict) -> None:
        assert content["server"]["port"] == 3030
        content["deployments"]["staging"]["port"] = staging_port
        content["deployments"]["production"]["port"] = production_port

    path, refusal = _refused_local_settings(tmp_path, edit)
    assert refusal == f"{path}: {problems}"


def test_server_port_on_the_dagster_uis_port_is_refused_when_loaded(tmp_path):
    path, refusal = _refused_local_settings(tmp_path, lambda content: content["server"].update(port=3000))
    assert refusal == (
        f"{path}: server.port = 3000: the same port as the Dagster UI (`mlops dev`); `mlops deploy local` needs its own"
    )


def test_a_cloud_run_stage_has_no_local_port_to_collide(tmp_path):
    import yaml

    from mlops_assets.lib.environment_settings import load_environment_settings

    content = yaml.safe_load((settings.PROJECT_ROOT / "deployments" / "staging.yaml").read_text())
    content["deployments"]["staging"]["port"] = 3000  # unused by target cloud_run
    path = tmp_path / "staging.yaml"
    path.write_text(yaml.safe_dump(content))
    assert load_environment_settings(path, "staging").deployments.staging.port == 3000


def test_deployments_json_with_nothing_deployed_and_a_closed_reader(tmp_path):
    """`mlops deployments --json | head` must not end in a BrokenPipeError traceback: the reader is gone first."""
    import subprocess
    import sys

    mlops = str(Path(sys.executable).parent / "mlops")
    env = {**os.environ, "MLOPS_HOME": str(tmp_path / "home"), "MLOPS_ENV": "local"}
    env.pop("MLOPS_REGISTRY_URL", None)
    listed = subprocess.run([mlops, "deployments", "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    nothing = {"record": None, "health": [], "warning": None}
    assert json.loads(listed.stdout) == {"staging": nothing, "production": nothing, "local": nothing}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        closed = subprocess.run(
            [mlops, "deployments", "--json"], env=env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write_end)
    assert (closed.returncode, closed.stderr) == (0, "")


def test_ctrl_c_during_a_deploy_is_one_line(monkeypatch, capsys):
    from mlops_assets import deploy_release
    from mlops_assets.cli import main

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(deploy_release, "deploy_stage", interrupted)
    assert main(["deploy", "staging"]) == 130
    assert capsys.readouterr().err == (
        "interrupted; a revision being started was stopped and what was serving keeps serving; "
        "`mlops deployments` shows it.\n"
    )


def test_a_live_stage_on_a_changed_address_is_refused_until_undeployed(tmp_path, monkeypatch):
    from mlops_assets.resources.local_target import StageState

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    old_port, new_port = free_port(), free_port()
    live = LocalDeployer("staging", _settings(old_port))
    state = StageState()
    live._publish_routes(state)  # the stage's router on its recorded address
    live._save(state)
    try:
        moved = LocalDeployer("staging", _settings(new_port))
        with pytest.raises(DeploymentError) as refused:
            moved.deploy(Release("staging", 1, "image-classifier-service:any", ()))
        assert str(refused.value) == (
            f"staging is live on 127.0.0.1 port {old_port}, but deployments.staging in local.yaml now says 127.0.0.1 "
            f"port {new_port}; nothing was changed. Run `mlops undeploy staging` first, then deploy it again on the "
            "new address."
        )
        assert httpx.get(f"http://127.0.0.1:{old_port}/-/routes", timeout=10).status_code == 200
        assert port_is_free("127.0.0.1", new_port) is True
    finally:
        live.undeploy()
    assert port_is_free("127.0.0.1", old_port) is True


def test_urls_bracket_ipv6_hosts():
    from mlops_assets.lib.deploy.supervisor import url_for

    assert url_for("::1", 3100) == "http://[::1]:3100"
    assert url_for("::", 3100) == "http://[::1]:3100"
    assert url_for("0.0.0.0", 3100) == "http://127.0.0.1:3100"
    assert url_for("127.0.0.1", 3100) == "http://127.0.0.1:3100"
    assert LocalDeployer("staging", _settings(3100, host="::1")).url == "http://[::1]:3100"
