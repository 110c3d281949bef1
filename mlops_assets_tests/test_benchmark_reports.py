"""The committed serving results are what the benchmark's own renderer makes of its JSON, and the README shows them."""

import json
import statistics
from pathlib import Path

import pytest

from benchmarks.bench_serving import markdown

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def test_serving_markdown_is_rendered_from_the_committed_json() -> None:
    report = json.loads((RESULTS / "serving.json").read_text())
    assert markdown(report) == (RESULTS / "serving.md").read_text()


def test_readme_shows_the_committed_serving_summary() -> None:
    summary = [line for line in (RESULTS / "serving.md").read_text().splitlines() if line.startswith("| ")]
    readme = (ROOT / "README.md").read_text()
    # The summary table (its first rows, before the per-model sections) appears verbatim in the README.
    first_section = next(i for i, line in enumerate(summary) if line.startswith("| server |"))
    for line in summary[:first_section]:
        assert line in readme, line


def test_every_configuration_reports_the_issue_measurements() -> None:
    report = json.loads((RESULTS / "serving.json").read_text())
    assert report["load_generator_ceiling"]["requests_per_s"] > 0
    for name, section in report["configurations"].items():
        for server in ("bentoml", "dependency", "naive"):
            loads = section["servers"][server]
            assert set(loads) == {"c1", "c16", "c64", "batch64"}, (name, server)
            assert all({"requests_per_s", "p50_ms", "p99_ms", "errors"} <= set(result) for result in loads.values())
        assert {"bentoml", "dependency", "naive"} <= set(section["time_to_ready_s"])
        assert section["in_process_limit"]["batch_64_images_per_s"] > 0


def test_each_batch_ratio_is_the_median_of_runs_paired_with_their_own_in_process_limit() -> None:
    report = json.loads((RESULTS / "serving.json").read_text())
    for name, section in report["configurations"].items():
        for server in ("bentoml", "dependency", "naive"):
            batch = section["servers"][server]["batch64"]
            runs, limits = batch["runs_requests_per_s"], batch["paired_c_images_per_s"]
            assert len(runs) == len(limits) >= 3, (name, server)
            ratios = [rate * 64 / limit for rate, limit in zip(runs, limits, strict=True)]
            assert batch["over_c_runs"] == pytest.approx(ratios), (name, server)
            assert batch["over_c"] == pytest.approx(statistics.median(ratios)), (name, server)
        assert section["ratios"]["a_batch64_over_c"] == section["servers"]["bentoml"]["batch64"]["over_c"]
        all_limits = [rate for s in section["servers"].values() for rate in s["batch64"]["paired_c_images_per_s"]]
        assert section["in_process_limit"]["batch_64_images_per_s"] == pytest.approx(statistics.median(all_limits))
