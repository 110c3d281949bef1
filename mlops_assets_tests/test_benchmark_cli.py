"""A shortened serving benchmark run cannot overwrite the committed full run's results."""

from __future__ import annotations

import subprocess
import sys

from mlops_assets import settings

SCRIPT = settings.PROJECT_ROOT / "benchmarks" / "bench_serving.py"
COMMITTED = settings.PROJECT_ROOT / "benchmarks" / "results" / "serving.json"


def test_a_shortened_run_into_the_committed_folder_is_refused_before_measuring() -> None:
    before = COMMITTED.read_bytes()
    refused = subprocess.run(
        [sys.executable, str(SCRIPT), "--duration", "1", "--configurations", "digits"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines()[-1].endswith(
        "a run with --duration, --configurations changed would replace the committed full run's results in "
        f"{COMMITTED.parent} and the README's summary; pass --results DIR to write it elsewhere."
    )
    assert COMMITTED.read_bytes() == before


def test_a_shortened_training_run_into_the_committed_folder_is_refused_before_measuring() -> None:
    committed = settings.PROJECT_ROOT / "benchmarks" / "results" / "training.json"
    before = committed.read_bytes()
    refused = subprocess.run(
        [sys.executable, str(SCRIPT.with_name("bench_training.py")), "--repeats", "1", "--datasets", "digits"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines()[-1].endswith(
        "a run with --repeats, --datasets changed would replace the committed full run's results in "
        f"{committed.parent} and the README's section; pass --results DIR to write it elsewhere."
    )
    assert committed.read_bytes() == before
