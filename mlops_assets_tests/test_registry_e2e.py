"""End to end through `mlops`: a training run killed part-way leaves the registry unchanged; the CLI reads it."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

pytestmark = pytest.mark.e2e
MLOPS = str(Path(sys.executable).parent / "mlops")
TABLES = ("model_versions", "version_states", "gate_decisions", "audit_log", "registry_environments")


def _env(home: Path) -> dict[str, str]:
    env = {**os.environ, "MLOPS_HOME": str(home)}
    for key in ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME"):
        env.pop(key, None)
    return env


def _mlops(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([MLOPS, *args], env=_env(home), capture_output=True, text=True, timeout=600)


def _snapshot(home: Path) -> dict[str, list]:
    engine = create_engine(f"sqlite:///{home / 'registry.db'}")
    with engine.connect() as connection:
        snapshot = {table: connection.execute(text(f"SELECT * FROM {table} ORDER BY 1")).all() for table in TABLES}
    engine.dispose()
    return snapshot


def _config(tmp_path: Path, epochs: int) -> str:
    path = tmp_path / f"epochs{epochs}.yaml"
    path.write_text(f"ops: {{trained_model: {{config: {{epochs: {epochs}}}}}}}\n")
    return str(path)


def test_killing_a_training_run_leaves_the_registry_unchanged_and_the_next_run_completes(
    tmp_path: Path, digits_subset: Path
) -> None:
    home = tmp_path / "home"
    first = _mlops(home, "run", "--dataset", str(digits_subset), "--config", _config(tmp_path, 3))
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "promotion:     version 1 is in production in local" in first.stdout
    before = _snapshot(home)

    log = tmp_path / "killed.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [MLOPS, "run", "--dataset", str(digits_subset), "--config", _config(tmp_path, 100_000)],
            env=_env(home),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 300
        while "trained_model - epoch 3/100000" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert _snapshot(home) == before

    again = _mlops(home, "run", "--dataset", str(digits_subset), "--config", _config(tmp_path, 3))
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    # Same data, code and seed give the same weights: the registry recognises version 1 instead of adding a copy.
    assert "already version 1 (production)" in again.stdout

    listed = _mlops(home, "models", "list")
    assert listed.returncode == 0 and "1        production" in listed.stdout
    shown = _mlops(home, "models", "show", "1")
    assert "first model" in shown.stdout and "staging_to_production is automatic in local" in shown.stdout
    refused = _mlops(home, "models", "disable", "1", "--reason", "try")
    assert refused.returncode == 1 and "roll back first" in refused.stderr
    compared = _mlops(home, "models", "compare", "1", "1")
    assert compared.returncode == 0 and "accuracy (now)" in compared.stdout
    assert compared.stderr == ""  # nothing of Dagster's own logging around the table
