"""A shortened serving benchmark run cannot overwrite the committed full run's results."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mlops_assets import settings

BENCHMARKS = settings.PROJECT_ROOT / "benchmarks"


@pytest.mark.parametrize(
    ("script", "arguments", "last_line_end"),
    [
        (
            "bench_serving.py",
            ["--duration", "1", "--configurations", "digits"],
            "a run with --duration, --configurations changed would replace the committed full run's results in "
            "{results} and the README's summary; pass --results DIR to write it elsewhere.",
        ),
        (
            "bench_training.py",
            ["--repeats", "1", "--datasets", "digits"],
            "a run with --repeats, --datasets changed would replace the committed full run's results in "
            "{results} and the README's section; pass --results DIR to write it elsewhere.",
        ),
    ],
    ids=["serving", "training"],
)
def test_a_shortened_run_into_the_committed_folder_is_refused_before_measuring(
    script: str, arguments: list[str], last_line_end: str
) -> None:
    committed = BENCHMARKS / "results" / script.replace("bench_", "").replace(".py", ".json")
    before = committed.read_bytes()
    refused = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *arguments], capture_output=True, text=True, timeout=300
    )
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.splitlines()[-1].endswith(last_line_end.format(results=committed.parent))
    assert committed.read_bytes() == before
