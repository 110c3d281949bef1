"""Real `mlops run` processes at once on one home: both end cleanly, one production version, a consistent audit log;
a run whose gate compared with a production version that changed before it promoted fails, and says so."""

import re
import signal
from pathlib import Path

import pytest

from mlops_assets_tests.cli_processes import (
    FAST_CONFIG,
    Finished,
    brightness_dataset,
    kill_unfinished,
    leftovers,
    pause_promotion,
    registry,
    replay,
    run_of,
    runs,
    start_run,
    wait_for,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def _no_process_left_behind():
    yield
    kill_unfinished()


SUCCESS = re.compile(r"^Dagster run ([0-9a-f-]{36}): SUCCESS$")
STALE = re.compile(
    r"^  step model_promotion failed: (?:.*RegistryError: )?Version (\d+) was not promoted: production changed since "
    r"the gate; rerun \(`mlops run`\), so that the gate compares it with what is in production now\. The gate compared "
    r"it with (production version \d+|no production model); version (\d+) is in production in local now\.$"
)


def _line(finished: Finished, label: str) -> str:
    (line,) = [line for line in finished.stdout.splitlines() if line.startswith(f"  {label}:")]
    return line.split(":", 1)[1].strip()


def _version(finished: Finished) -> int:
    return int(re.search(r"version (\d+)", _line(finished, "registry")).group(1))


def _run_id(finished: Finished) -> str:
    return re.match(r"^Dagster run ([0-9a-f-]{36}): ", finished.stdout).group(1)


def _production_changed(version: int, run_id: str) -> re.Pattern:
    """The summary line of a refused promotion: what production is now and which run promoted it."""
    return re.compile(
        rf"changed since the gate; now version {version}, promoted by dagster run {run_id} on "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("brightness")
    return {seed: brightness_dataset(root / f"set{seed}", seed) for seed in range(1, 6)}


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "fast.yaml"
    path.write_text(FAST_CONFIG)
    return path


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory, datasets: dict[int, Path], config: Path) -> dict:
    """A home two runs on the same dataset started on together while it did not exist yet."""
    root = tmp_path_factory.mktemp("concurrent")
    home, logs = root / "home", root / "logs"
    first, second = (start_run(home, logs, name, datasets[1], config) for name in ("fresh-a", "fresh-b"))
    return {"home": home, "logs": logs, "finished": [first.finish(), second.finish()]}


def test_two_runs_on_a_fresh_home_at_once_share_one_version_in_production(shared_home: dict) -> None:
    home, finished = shared_home["home"], shared_home["finished"]
    for run in finished:
        assert (run.returncode, "Traceback" in run.stderr) == (0, False), run.stdout + run.stderr[-3000:]
        assert SUCCESS.match(run.stdout.splitlines()[0]), run.stdout
        assert _line(run, "promotion") == "version 1 is in production in local"
    # The same model: one registers it, the other finds it (in whatever status the first had brought it to by then).
    outcomes = sorted(_line(run, "registry") for run in finished)
    assert outcomes[0] == "registered as version 1 (candidate)"
    assert re.fullmatch(
        r"the same model is already version 1 \((candidate|staging|production)\); not registered again", outcomes[1]
    )
    assert len({_line(run, "bento") for run in finished}) == 1
    with registry(home) as models:
        assert models.state_summary() == {"production": [1]}
        history = models.history()
    # Registered once, promoted once: the later run found it promoted, which is not an error.
    assert [(e.version, e.action, e.from_status, e.to_status) for e in history] == [
        (1, "register", None, "candidate"),
        (1, "promote", "candidate", "staging"),
        (1, "promote", "staging", "production"),
    ]
    assert replay(history) == {1: "production"}
    run_ids = [SUCCESS.match(run.stdout.splitlines()[0]).group(1) for run in finished]
    assert runs(home) == {run_id: ("SUCCESS", []) for run_id in run_ids}
    # One model and one bento in the store (the second store was a cache hit), nothing half-written anywhere.
    assert len(list((home / "bentoml" / "models" / "image-classifier").glob("*/model.yaml"))) == 1
    assert len(list((home / "bentoml" / "bentos" / "image-classifier-service").glob("*/bento.yaml"))) == 1
    assert leftovers(home) == []


def test_two_runs_on_different_datasets_at_once_end_cleanly_with_one_production_version(
    shared_home: dict, datasets: dict[int, Path], config: Path
) -> None:
    home, logs = shared_home["home"], shared_home["logs"]
    with registry(home) as models:
        before = models.production().number
        known = len(models.history())
    processes = [start_run(home, logs, f"different-{seed}", datasets[seed], config) for seed in (2, 3)]
    finished = [process.finish() for process in processes]

    with registry(home) as models:
        history = models.history()[known:]
        summary = models.state_summary()
        verdicts = {version: models.gate_decisions(version)[-1] for version in (before + 1, before + 2)}
    versions = sorted(_version(run) for run in finished)
    assert versions == [before + 1, before + 2]
    succeeded = [run for run in finished if run.returncode == 0]
    assert succeeded, [run.stdout for run in finished]
    for run in finished:
        version = _version(run)
        if run.returncode == 0:
            assert SUCCESS.match(run.stdout.splitlines()[0]), run.stdout
            assert _line(run, "promotion") == f"version {version} is in production in local"
            # It replaced exactly the version its gate compared it with.
            (replaced,) = [e.version for e in history if e.action == "replaced" and e.reason.endswith(f" {version}")]
            assert verdicts[version].details["champion_version"] == replaced
        else:
            # The other one promoted first, after this one's gate: refused, and nothing of it moved.
            assert run.returncode == 1 and "FAILED" in run.stdout.splitlines()[0], run.stdout
            (stale,) = [STALE.match(line) for line in run.stdout.splitlines() if STALE.match(line)]
            assert (int(stale.group(1)), stale.group(2)) == (version, f"production version {before}")
            assert [(e.action, e.to_status) for e in history if e.version == version] == [("register", "candidate")]
            # Its summary says what production is now, and which run put it there (the winner).
            (winner,) = succeeded
            now = _production_changed(_version(winner), _run_id(winner))
            assert now.fullmatch(_line(run, "production")), run.stdout
    # One production version, which the audit log leads to without ever passing through two.
    with registry(home) as models:
        assert len(summary["production"]) == 1 and summary["production"][0] in versions
        assert replay(models.history())[summary["production"][0]] == "production"
    assert leftovers(home) == []


def test_a_promotion_after_production_changed_since_the_gate_fails_and_keeps_the_new_version(
    shared_home: dict, datasets: dict[int, Path], config: Path
) -> None:
    home, logs = shared_home["home"], shared_home["logs"]
    with registry(home) as models:
        champion = models.production().number
    late = start_run(home, logs, "stale-a", datasets[4], config)
    run_id = wait_for("the run to be created", lambda: run_of(home, late), late, interval=0.2).run_id
    # Paused after its gate passed against the current production version, before its promotion.
    pause_promotion(home, late, run_id, late.pause)
    with registry(home) as models:
        assert [e.action for e in models.history() if run_id in e.actor] == ["register"], "it promoted already"

    # Meanwhile another run builds, gates against the same production version, and promotes its own model.
    other = start_run(home, logs, "stale-b", datasets[5], config).finish()
    assert other.returncode == 0, other.stdout + other.stderr[-3000:]
    newer = _version(other)
    assert _line(other, "promotion") == f"version {newer} is in production in local"

    late.signal(signal.SIGCONT)
    refused = late.finish()
    assert refused.returncode == 1 and refused.stdout.splitlines()[0] == f"Dagster run {run_id}: FAILED"
    (stale,) = [STALE.match(line) for line in refused.stdout.splitlines() if STALE.match(line)]
    version = _version(refused)
    assert (int(stale.group(1)), stale.group(2), int(stale.group(3))) == (
        version,
        f"production version {champion}",
        newer,
    )
    assert _production_changed(newer, _run_id(other)).fullmatch(_line(refused, "production")), refused.stdout
    with registry(home) as models:
        assert models.production().number == newer
        assert models.version(version).status == "candidate"
        assert [(e.action, e.to_status) for e in models.history(version)] == [("register", "candidate")]
        replay(models.history())
    assert runs(home)[run_id][0] == "FAILURE"
    assert leftovers(home) == []
