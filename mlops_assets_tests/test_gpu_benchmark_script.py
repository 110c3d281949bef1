"""The one-call GPU benchmark script refuses, before measuring anything, to run where torch sees no GPU, and says
what to do; its arguments are checked."""

import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu" / "run.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the script would measure it")
def test_without_a_gpu_the_script_stops_before_measuring_and_says_how_to_go_on() -> None:
    result = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "No GPU is visible to torch" in result.stderr
    assert "pass --allow-cpu to run the same steps on the CPU" in result.stderr
    assert "== Serving benchmark" not in result.stdout


def test_an_unknown_argument_is_refused_with_the_accepted_ones() -> None:
    result = subprocess.run(["bash", str(SCRIPT), "--fast"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 64
    assert result.stderr.strip() == "unknown argument --fast; use --smoke, --allow-cpu or --results DIR"
