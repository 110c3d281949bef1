"""`mlops run` killed (SIGKILL) during validation, training, the bento build and promotion: each next start marks the
killed run failed and removes what it left, and the last one completes."""

import json
import socket
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.packaging import PENDING_WRITE
from mlops_assets_tests.cli_processes import (
    FAST_CONFIG,
    MlopsProcess,
    brightness_dataset,
    kill_unfinished,
    leftovers,
    pause_promotion,
    registry,
    replay,
    runs,
    start_run,
    steps,
    wait_for,
    wait_for_step,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _no_process_left_behind():
    yield
    kill_unfinished()


def _failed_by_housekeeping(process: MlopsProcess) -> tuple[str, list[str]]:
    return (
        "FAILURE",
        [
            f"The process that ran this run (pid {process.pid} on {socket.gethostname()}) is gone: it was killed or "
            "crashed while the run was STARTED. Marked failed by mlops housekeeping; run the job again to build what "
            "it did not."
        ],
    )


def test_a_run_killed_at_any_step_is_failed_by_the_next_start_which_removes_its_leftovers(tmp_path: Path) -> None:
    home, logs = tmp_path / "home", tmp_path / "logs"
    dataset = brightness_dataset(tmp_path / "data", seed=7)
    config, slow_training = tmp_path / "fast.yaml", tmp_path / "slow-training.yaml"
    config.write_text(FAST_CONFIG)
    # A CNN trained for many epochs: a training step long enough to be seen from outside and killed in.
    slow_training.write_text("ops: {trained_model: {config: {plugin: cnn, epochs: 5000}}}\n")

    def start(name: str, run_config: Path = config) -> MlopsProcess:
        return start_run(home, logs, name, dataset, run_config)

    # Validation, killed while it writes the validated data (a partial folder named with its pid).
    validation = start("validation")
    killed = {"validation": (validation, wait_for_step(home, validation, "validated_images"))}
    validated = home / "artifacts" / "validated_images"
    (partial,) = wait_for("the validated data's partial folder", lambda: list(validated.glob(".partial-*")), validation)
    validation.kill()
    assert runs(home)[killed["validation"][1]] == ("STARTED", [])

    # Training: the next start failed the killed run and removed its partial folder before it ran anything.
    training = start("training", slow_training)
    killed["training"] = (training, wait_for_step(home, training, "trained_model"))
    assert runs(home)[killed["validation"][1]] == _failed_by_housekeeping(validation)
    assert not partial.exists()
    training.kill()
    assert "trained_model" not in steps(home, killed["training"][1], dg.DagsterEventType.STEP_SUCCESS)

    # The bento build, killed while BentoML builds in its temporary folder.
    build = start("bento")
    killed["bento"] = (build, wait_for_step(home, build, "bento"))
    assert runs(home)[killed["training"][1]] == _failed_by_housekeeping(training)
    temporary = home / "bentoml" / "tmp"
    (building,) = wait_for("the bento build folder", lambda: list(temporary.glob("bentoml_bento_*")), build, 0.02)
    journal = home / "locks" / PENDING_WRITE
    assert json.loads(journal.read_text())["pid"] == build.pid
    build.kill()
    assert building.exists()

    # Promotion: killed once its gate passed, while its promotion waits for the registry.
    promotion = start("promotion")
    run_id = wait_for_step(home, promotion, "bento")
    killed["promotion"] = (promotion, run_id)
    assert runs(home)[killed["bento"][1]] == _failed_by_housekeeping(build)
    assert not building.exists()
    assert not journal.exists() or json.loads(journal.read_text())["pid"] == promotion.pid
    pause_promotion(home, promotion, run_id, promotion.kill)
    with registry(home) as models:
        assert models.state_summary() == {"candidate": [1]}

    # The next start fails the last killed run and completes: every step's output is whole, so it is reused or redone.
    completed = start("completed").finish()
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert lines[1] == (
        f"  housekeeping:  run {run_id} was left STARTED by pid {promotion.pid}, which is gone; marked it failed"
    )
    assert lines[-1] == "  promotion:     version 1 is in production in local"
    final = runs(home)
    for name, (process, killed_run) in killed.items():
        assert final.pop(killed_run) == _failed_by_housekeeping(process), name
    assert [status for status, _ in final.values()] == ["SUCCESS"]
    with registry(home) as models:
        history = models.history()
    assert [(e.version, e.action, e.to_status) for e in history] == [
        (1, "register", "candidate"),
        (1, "promote", "staging"),
        (1, "promote", "production"),
    ]
    assert replay(history) == {1: "production"}
    assert leftovers(home) == []
