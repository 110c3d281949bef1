"""The committed benchmark reports and README.md's benchmark sections are what the renderers make of the committed
JSON results, and the renderers compute every ratio, verdict and conclusion from the measurements."""

import ast
import copy
import json
import statistics
from pathlib import Path

import pytest

from benchmarks import bench_rebuild, bench_validation, training_report
from benchmarks.readme_sections import replace_section, section
from benchmarks.serving_report import (
    LETTERS,
    StaleReportError,
    check_schema,
    decode_bound,
    markdown,
    median_interval,
    ratios,
    refresh_derived,
    summary,
    targets,
    verdicts,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"


def _json(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def _serving() -> dict:
    """The committed serving results; StaleReportError, saying to rerun the benchmark, when they predate a server."""
    report = _json("serving.json")
    check_schema(report)
    return report


# Serving: the committed results.


def test_serving_markdown_is_rendered_from_the_committed_json() -> None:
    assert markdown(_serving()) == (RESULTS / "serving.md").read_text()


def test_readme_serving_summary_is_rendered_from_the_committed_json() -> None:
    assert section(README.read_text(), "serving") == summary(_serving())


def test_every_configuration_reports_the_issue_measurements() -> None:
    report = _serving()
    assert report["load_generator_ceiling"]["requests_per_s"] > 0
    # The naive baseline runs as deployed: one uvicorn worker per core of the machine measured.
    assert report["naive_workers"] == report["machine"]["cpus"]
    for name, section_ in report["configurations"].items():
        assert set(section_["servers"]) == set(LETTERS), name
        for server, loads in section_["servers"].items():
            assert set(loads) == {"c1", "c16", "c64", "batch64"}, (name, server)
            assert all({"requests_per_s", "p50_ms", "p99_ms", "errors"} <= set(result) for result in loads.values())
        assert set(section_["time_to_ready_s"]) == set(LETTERS), name
        assert section_["in_process_limit"]["batch_64_images_per_s"] > 0
        assert section_["per_image_us"]["decode"] > 0 and section_["per_image_us"]["forward_batch64"] > 0


def test_stored_ratios_and_targets_are_the_ones_computed_from_the_measurements() -> None:
    for name, section_ in _serving()["configurations"].items():
        assert section_["ratios"] == pytest.approx(ratios(section_)), name
        assert section_["targets"] == targets(section_), name
        assert section_["verdicts"] == verdicts(section_), name


def test_each_batch_ratio_is_the_median_of_runs_paired_with_their_own_in_process_limit() -> None:
    report = _serving()
    for name, section_ in report["configurations"].items():
        for server in LETTERS:
            batch = section_["servers"][server]["batch64"]
            runs, limits = batch["runs_requests_per_s"], batch["paired_c_images_per_s"]
            assert len(runs) == len(limits) >= 3, (name, server)
            over_c = [rate * 64 / limit for rate, limit in zip(runs, limits, strict=True)]
            assert batch["over_c_runs"] == pytest.approx(over_c), (name, server)
            assert batch["over_c"] == pytest.approx(statistics.median(over_c)), (name, server)
        all_limits = [rate for s in section_["servers"].values() for rate in s["batch64"]["paired_c_images_per_s"]]
        assert section_["in_process_limit"]["batch_64_images_per_s"] == pytest.approx(statistics.median(all_limits))


# Serving: the renderer on a report built here, so each verdict's inputs are known.


def _load(requests_per_s: float, p50_ms: float = 2.0, p99_ms: float = 5.0, errors: int = 0) -> dict:
    return {"requests_per_s": requests_per_s, "p50_ms": p50_ms, "p99_ms": p99_ms, "requests": 1000, "errors": errors}


def _server(c1: float, c64: float, p99_c64: float, over_c: float, p50_c1: float = 2.0) -> dict:
    return {
        "c1": _load(c1, p50_c1),
        "c16": _load(c64),
        "c64": _load(c64, 20.0, p99_c64),
        "batch64": {
            **_load(10.0),
            "images_per_s": 640.0,
            "runs_requests_per_s": [10.0],
            "paired_c_images_per_s": [640.0 / over_c],
            "paired_c_layouts": ["1 process x 2 threads"],
            "paired_c_by_layout": [{"1 process x 1 thread": 500.0}],
            "over_c_runs": [over_c],
            "over_c": over_c,
        },
    }


def _section(a_c1: float, a_p50_c1: float, a_c64: float, a_p99_c64: float, a_over_c: float) -> dict:
    return {
        "description": "a model",
        "input": {"shape": [1, 8, 8], "png_bytes_mean": 125},
        "batch64_body_bytes": 15672,
        "time_to_ready_s": dict.fromkeys(LETTERS, 2.0),
        "in_process_limit": {
            "batch_1_images_per_s": 2000.0,
            "batch_1_layout": "2 processes x 1 thread",
            "batch_1_by_layout": {},
            "batch_64_images_per_s": 1000.0,
            "batch_64_runs_images_per_s": [900.0, 1000.0, 1100.0],
            "batch_64_layout": "1 process x 2 threads",
        },
        "per_image_us": {"decode": 30.0, "forward_batch64": 10.0},
        "servers": {
            "bentoml": _server(a_c1, a_c64, a_p99_c64, a_over_c, a_p50_c1),
            "dependency": _server(300.0, 500.0, 90.0, 0.4),
            "naive_workers": _server(1000.0, 1000.0, 200.0, 0.5),
            "naive_single": _server(800.0, 800.0, 900.0, 0.4),
        },
    }


def _report() -> dict:
    return {
        "machine": {"cpus": 2, "platform": "Linux", "device": "cpu"},
        "note": "A test machine.",
        "duration_s_per_run": 6,
        "batch_runs": 1,
        "naive_workers": 2,
        "wall_s": 900.0,
        "load_generator_ceiling": _load(30000.0),
        "configurations": {
            # `ahead` meets every target; `behind` misses each one but zero errors (see the targets test).
            "ahead": _section(a_c1=950.0, a_p50_c1=2.5, a_c64=1100.0, a_p99_c64=60.0, a_over_c=0.8),
            "behind": _section(a_c1=500.0, a_p50_c1=3.5, a_c64=940.0, a_p99_c64=150.0, a_over_c=0.2),
        },
    }


def test_targets_are_computed_against_the_naive_server_with_one_worker_per_core() -> None:
    report = _report()
    report["configurations"]["behind"]["servers"]["bentoml"]["c64"]["errors"] = 2
    assert targets(report["configurations"]["ahead"]) == {
        "c64 throughput at least (b)'s": True,
        "c64 p99 at most 50% of (b)'s": True,
        "c64 zero errors": True,
        "c1 throughput at least 90% of (b)'s": True,
        "c1 p50 within 1 ms of (b)'s": True,
        "64-image batches at least 70% of (c)": True,
    }
    assert targets(report["configurations"]["behind"]) == dict.fromkeys(
        targets(report["configurations"]["ahead"]), False
    )
    text = summary(report)
    assert (
        "- **c64 zero errors**: met for `ahead` (0 of 1000 requests in the concurrency-64 run); **not met** for"
        " `behind` (2 of 1000"
    ) in text
    # Without paired rounds (a report from before them) the goals are judged on the single runs, and say so.
    single = "single runs, no paired rounds"
    assert (
        f"- **c1 throughput at least 90% of (b)'s**: met for `ahead` (0.95x; {single}); **not met** for `behind`"
        f" (0.50x; {single})."
    ) in text
    assert (
        f"- **c1 p50 within 1 ms of (b)'s**: met for `ahead` (2.5 ms against 2.0 ms: +0.50 ms; {single});"
        f" **not met** for `behind` (3.5 ms against 2.0 ms: +1.50 ms; {single})."
    ) in text
    assert "| target: c64 throughput at least (b)'s | met | **not met** |" in text
    assert (
        f"- **c64 throughput at least (b)'s**: met for `ahead` (1.10x; {single}); **not met** for `behind`"
        f" (0.94x; {single})."
    ) in text
    assert (
        f"- **c64 p99 at most 50% of (b)'s**: met for `ahead` (0.30x: 60 ms against 200 ms; {single});"
        f" **not met** for `behind` (0.75x: 150 ms against 200 ms; {single})."
    ) in text
    assert (
        "- **64-image batches at least 70% of (c)**: met for `ahead` (0.80; paired runs 0.80);"
        " **not met** for `behind` (0.20; paired runs 0.20)." in text
    )


def _paired(a_rates: list[float], b_rates: list[float], a_p50s: list[float] | None = None) -> dict:
    return {
        "rounds": len(a_rates),
        "duration_s": 3,
        "runs": {
            "bentoml": [_load(rate, p50) for rate, p50 in zip(a_rates, a_p50s or [2.0] * len(a_rates), strict=True)],
            "naive_workers": [_load(rate) for rate in b_rates],
        },
    }


def _paired_c64(a_rounds: list[tuple[float, float]], b_rounds: list[tuple[float, float]]) -> dict:
    """Paired concurrency-64 rounds from each round's (requests/s, p99 ms) of (a) and (b)."""
    return {
        "rounds": len(a_rounds),
        "duration_s": 3,
        "runs": {
            "bentoml": [_load(rate, 20.0, p99) for rate, p99 in a_rounds],
            "naive_workers": [_load(rate, 25.0, p99) for rate, p99 in b_rounds],
        },
    }


def test_the_concurrency_64_goals_are_judged_on_the_median_of_the_paired_rounds() -> None:
    report = _report()
    ahead, behind = report["configurations"]["ahead"], report["configurations"]["behind"]
    # The single runs say the opposite of the rounds: `ahead` 1.10x and p99 0.30x (60 ms against 200 ms), `behind`
    # 0.94x and 0.75x (150 ms against 200 ms). The rounds decide.
    ahead["paired_c64"] = _paired_c64([(900.0, 60.0), (950.0, 55.0), (980.0, 70.0)], [(1000.0, 100.0)] * 3)
    behind["paired_c64"] = _paired_c64([(1200.0, 40.0), (1300.0, 60.0), (1100.0, 50.0)], [(1000.0, 200.0)] * 3)
    throughput, tail = "c64 throughput at least (b)'s", "c64 p99 at most 50% of (b)'s"
    assert not targets(ahead)[throughput] and not targets(ahead)[tail]
    assert targets(behind)[throughput] and targets(behind)[tail]
    text = summary(report)
    assert (
        f"- **{throughput}**: met for `behind` (1.20x: median of 3 paired rounds, 1.10-1.30; the single run above:"
        " 0.94x); **not met** for `ahead` (0.95x: median of 3 paired rounds, 0.90-0.98; the single run above: 1.10x)."
    ) in text
    assert (
        f"- **{tail}**: met for `behind` (0.25x: median of 3 paired rounds, 0.20-0.30; the single run above: 150 ms"
        " against 200 ms); **not met** for `ahead` (0.60x: median of 3 paired rounds, 0.55-0.70; the single run"
        " above: 60 ms against 200 ms)."
    ) in text
    assert "| (a) / (b) throughput, concurrency 64, paired rounds: median (range) | 0.95 (0.90-0.98) | 1.20" in text
    assert "| (a) / (b) p99, concurrency 64, paired rounds: median (range) | 0.60 (0.55-0.70) | 0.25 (0.20-0.30) |" in (
        text
    )
    assert (
        "(a)/(b) per round: 0.90, 0.95, 0.98; p99 ms per round, (a): 60.00, 55.00, 70.00; (b): 100.00, 100.00, 100.00."
    ) in markdown(report)
    # A report from before the paired concurrency-64 rounds is judged on its single runs, as it was.
    del ahead["paired_c64"]
    assert targets(ahead)[throughput] and targets(ahead)[tail]
    assert "(0.30x: 60 ms against 200 ms; single runs, no paired rounds)" in summary(report)


def test_a_concurrency_64_median_the_rounds_cannot_tell_from_its_threshold_is_not_established() -> None:
    report = _report()
    section = report["configurations"]["behind"]
    # 16 rounds: p99 ratios 0.30 to 0.75 around a median of 0.504; the interval (4th lowest to 4th highest, 0.45 to
    # 0.60) holds 0.5.
    p99s = [30.0, 35.0, 40.0, 45.0, 48.0, 49.0, 50.0, 50.4, 50.4, 51.0, 52.0, 55.0, 60.0, 65.0, 70.0, 75.0]
    section["paired_c64"] = _paired_c64([(1200.0, p99) for p99 in p99s], [(1000.0, 100.0)] * 16)
    goal = "c64 p99 at most 50% of (b)'s"
    assert not targets(section)[goal]
    text = summary(report)
    assert f"| target: {goal} | met | not established (the median misses it) |" in text
    # The median is written with the decimals that tell it from the threshold.
    assert (
        "not established for `behind` (0.504x: median of 16 paired rounds, 0.30-0.75, 95 % interval of the median"
        " 0.45 to 0.60, which holds the goal's threshold; the single run above: 150 ms against 200 ms)."
    ) in text


def test_on_a_gpu_the_concurrency_64_rounds_are_judged_against_three_times_the_naive_server() -> None:
    report = _report()
    report["machine"].update(device="cuda", device_name="A test GPU")
    section = report["configurations"]["ahead"]
    # Ratios 2.5 to 4.0 over 16 rounds: the median (3.25) meets 3x, the interval (2.8 to 3.6) holds it.
    rates = [2500.0, 2600.0, 2700.0, 2800.0, 2900.0, 3000.0, 3100.0, 3200.0]
    rates += [3300.0, 3350.0, 3400.0, 3500.0, 3600.0, 3800.0, 3900.0, 4000.0]
    section["paired_c64"] = _paired_c64([(rate, 20.0) for rate in rates], [(1000.0, 100.0)] * 16)
    goal = "GPU: c64 throughput at least 3x (b)'s"
    assert targets(section, "cuda")[goal]
    text = summary(report)
    assert f"| target: {goal} | not established (the median meets it) | **not met** |" in text
    assert (
        f"- **{goal}**: not established for `ahead` (3.25x: median of 16 paired rounds, 2.50-4.00, 95 % interval of"
        " the median 2.80 to 3.60, which holds the goal's threshold; the single run above: 1.10x)"
    ) in text


def test_errors_in_the_paired_rounds_fail_the_zero_errors_goal_and_are_listed() -> None:
    report = _report()
    section = report["configurations"]["ahead"]
    section["paired_c64"] = _paired_c64([(1200.0, 40.0)] * 2, [(1000.0, 100.0)] * 2)
    section["paired_c64"]["runs"]["bentoml"][1]["errors"] = 7  # 503s from shedding load look fast
    section["paired_c1"] = _paired([950.0], [1000.0])
    section["paired_c1"]["runs"]["naive_workers"][0]["errors"] = 1
    goal = "c64 zero errors"
    assert not targets(section)[goal]
    text = summary(report)
    assert "**not met** for `ahead` (7 of 3000 requests in the concurrency-64 run and its paired rounds)" in text
    assert "(a) `ahead` paired round 2 at concurrency 64: 7 of 1000" in text
    assert "(b) `ahead` paired round 1 at concurrency 1: 1 of 1000" in text


def test_the_concurrency_1_goal_is_judged_on_the_median_of_the_paired_rounds() -> None:
    report = _report()
    ahead, behind = report["configurations"]["ahead"], report["configurations"]["behind"]
    # The single runs say the opposite of the paired rounds: the rounds decide.
    ahead["servers"]["bentoml"]["c1"] = _load(850.0)  # 0.85x in its single run
    ahead["paired_c1"] = _paired([900.0, 1900.0, 470.0], [1000.0, 2000.0, 500.0])  # 0.90x, 0.95x, 0.94x
    behind["servers"]["bentoml"]["c1"] = _load(950.0)  # 0.95x in its single run
    behind["paired_c1"] = _paired([800.0, 950.0, 600.0, 880.0], [1000.0, 1000.0, 1000.0, 1000.0])
    goal = "c1 throughput at least 90% of (b)'s"
    assert targets(ahead)[goal] and not targets(behind)[goal]
    text = summary(report)
    assert (
        f"- **{goal}**: met for `ahead` (0.94x: median of 3 paired rounds, 0.90-0.95; the single run above: 0.85x);"
        " **not met** for `behind` (0.84x: median of 4 paired rounds, 0.60-0.95; the single run above: 0.95x)."
    ) in text
    assert "| (a) / (b) throughput, concurrency 1, paired rounds: median (range) | 0.94 (0.90-0.95) |" in text
    assert "(a)/(b) per round: 0.80, 0.95, 0.60, 0.88;" in markdown(report)
    # A report from before the paired rounds is judged on its single run, as it was.
    del ahead["paired_c1"]
    assert not targets(ahead)[goal]
    assert "(0.85x; single runs, no paired rounds)" in summary({**report, "configurations": {"ahead": ahead}})


def test_a_median_whose_rounds_cannot_tell_the_goal_apart_is_not_established() -> None:
    report = _report()
    clear, close = report["configurations"]["ahead"], report["configurations"]["behind"]
    naive = [1000.0] * 10
    clear["paired_c1"] = _paired([960.0, 940.0, 1000.0, 980.0, 930.0, 970.0, 990.0, 950.0, 1010.0, 920.0], naive)
    close["servers"]["bentoml"]["c1"] = _load(950.0)
    close["paired_c1"] = _paired([700.0, 880.0, 950.0, 920.0, 990.0, 1200.0, 910.0, 890.0, 940.0, 960.0], naive)
    goal = "c1 throughput at least 90% of (b)'s"
    assert targets(clear)[goal] and targets(close)[goal]
    text = summary(report)
    # With 10 rounds the interval runs from the 2nd lowest to the 2nd highest round (97.9 %).
    assert (
        "met for `ahead` (0.96x: median of 10 paired rounds, 0.92-1.01, 95 % interval of the median 0.93 to 1.00;"
    ) in text
    assert (
        "; not established for `behind` (0.93x: median of 10 paired rounds, 0.70-1.20, 95 % interval of the median"
        " 0.88 to 0.99, which holds the goal's threshold;"
    ) in text
    assert f"| target: {goal} | met | not established (the median meets it) |" in text


def test_an_interval_bound_that_rounds_to_the_threshold_is_written_with_one_more_decimal() -> None:
    report = _report()
    section = report["configurations"]["behind"]
    # 10 rounds: the interval runs from the 2nd lowest (0.898) to the 2nd highest (0.97).
    rates = [880.0, 898.0, 930.0, 940.0, 950.0, 950.0, 960.0, 960.0, 970.0, 990.0]
    section["paired_c1"] = _paired(rates, [1000.0] * 10)
    assert "95 % interval of the median 0.898 to 0.97, which holds the goal's threshold;" in summary(report)


@pytest.mark.parametrize("n", range(1, 41))
def test_the_median_interval_is_the_narrowest_order_statistic_interval_covering_95_percent(n: int) -> None:
    import math

    def coverage(k: int) -> float:  # of [x(k), x(n-k+1)], 1-based, for the median of any continuous distribution
        return 1 - 2 * sum(math.comb(n, i) for i in range(k)) / 2**n

    values = [float(index) for index in range(n)]
    best = max((k for k in range(1, n // 2 + 1) if coverage(k) >= 0.95), default=None)
    expected = None if best is None else (values[best - 1], values[n - best])
    assert median_interval(list(reversed(values))) == expected
    if expected is not None:
        assert coverage(best) >= 0.95 and (best + 1 > n // 2 or coverage(best + 1) < 0.95)


def test_the_idle_neighbours_cpu_during_the_paired_rounds_is_reported() -> None:
    report = _report()
    section = report["configurations"]["ahead"]
    section["paired_c1"] = _paired([950.0, 950.0], [1000.0, 1000.0])
    for server, seconds in (("bentoml", [0.03, 0.09]), ("naive_workers", [0.3, 0.0])):
        for run, cpu in zip(section["paired_c1"]["runs"][server], seconds, strict=True):
            run["idle_neighbour_cpu_s"] = cpu
    # 0.12 s over two 3 s runs of (a) is 2.0 % of a core for idle (b); 0.3 s over 6 s is 5.0 % for idle (a).
    assert "While (a) was loaded, (b), idle, used 2.0 % of a core; while (b) was loaded, (a), idle, used 5.0 %." in (
        markdown(report)
    )


def test_the_concurrency_1_latency_goal_is_judged_on_the_median_of_the_paired_rounds() -> None:
    report = _report()
    ahead, behind = report["configurations"]["ahead"], report["configurations"]["behind"]
    ahead["servers"]["bentoml"]["c1"] = _load(950.0, 4.5)  # +2.5 ms in its single run against (b)'s 2.0 ms
    ahead["paired_c1"] = _paired([950.0] * 3, [1000.0] * 3, a_p50s=[2.2, 2.9, 1.8])  # +0.2, +0.9, -0.2
    behind["servers"]["bentoml"]["c1"] = _load(950.0, 2.5)  # +0.5 ms in its single run
    behind["paired_c1"] = _paired([950.0] * 3, [1000.0] * 3, a_p50s=[3.5, 2.5, 3.2])  # +1.5, +0.5, +1.2
    goal = "c1 p50 within 1 ms of (b)'s"
    assert targets(ahead)[goal] and not targets(behind)[goal]
    assert (
        f"- **{goal}**: met for `ahead` (+0.20 ms: median of 3 paired rounds, -0.20 to +0.90 ms; the single run above:"
        " 4.5 ms against 2.0 ms); **not met** for `behind` (+1.20 ms: median of 3 paired rounds, +0.50 to +1.50 ms;"
        " the single run above: 2.5 ms against 2.0 ms)."
    ) in summary(report)
    assert "p50 ms per round, (a): 2.20, 2.90, 1.80; (b): 2.00, 2.00, 2.00." in markdown(report)


def test_summary_reports_both_naive_baselines_at_concurrency_1_and_64() -> None:
    text = summary(_report())
    # (a) 950 and 500 req/s at concurrency 1 against (b) 1000 and (b1) 800; at 64: 1100 and 940 against 1000 and 800.
    assert "| (a) / (b) throughput, concurrency 1 | 0.95 | 0.50 |" in text
    assert "| (a) / (b) throughput, concurrency 64 | 1.10 | 0.94 |" in text
    assert "| (a) / (b1) throughput, concurrency 1 | 1.19 | 0.62 |" in text
    assert "| (a) / (b1) throughput, concurrency 64 | 1.38 | 1.18 |" in text
    assert "| (a) / (b1) p99, concurrency 64 | 0.07 | 0.17 |" in text
    assert "| (a) / (b) p50, concurrency 1 | 1.25 | 1.75 |" in text
    assert "| errors at concurrency 64: (a), (b), (b1) | 0, 0, 0 | 0, 0, 0 |" in text
    assert (
        "(b) naive Starlette, uvicorn --workers 2, one torch thread each;"
        " (b1) naive Starlette, one process, torch's default threads." in text
    )
    assert "- **(b) against (b1)** at concurrency 64 (2 workers against one): throughput `ahead` 1.25x;" in text
    assert "- **Errors**: none in any run." in text


def test_errors_and_the_decode_bound_come_from_the_measurements() -> None:
    report = _report()
    report["configurations"]["behind"]["servers"]["naive_workers"]["c64"]["errors"] = 3
    # Forward 10 us and decode 30 us per image: with free HTTP, (a) could do at most 10 / 40 of (c).
    assert decode_bound(report["configurations"]["ahead"]) == pytest.approx(0.25)
    text = summary(report)
    assert "- **Errors**: (b) `behind` c64: 3 of 1000." in text
    assert "| errors at concurrency 64: (a), (b), (b1) | 0, 0, 0 | 0, 3, 0 |" in text
    assert "so (a)/(c) could reach at most about 0.25 even with free HTTP" in text


def test_a_report_without_the_worker_baseline_is_refused_with_what_to_do() -> None:
    report = _report()
    del report["configurations"]["ahead"]["servers"]["naive_workers"]
    with pytest.raises(
        StaleReportError, match=r"lacks the runs of naive_workers.*Rerun the benchmark \(`make bench`\)"
    ):
        summary(report)


def test_a_gpu_run_is_also_judged_against_three_times_the_naive_server_and_names_the_gpu() -> None:
    report = _report()
    report["machine"].update(device="cuda", device_name="NVIDIA H200")
    report["serving"] = {"api_workers": 16}
    report["configurations"]["ahead"]["servers"]["bentoml"]["c64"]["requests_per_s"] = 3100.0
    gpu_target = "GPU: c64 throughput at least 3x (b)'s"
    assert targets(report["configurations"]["ahead"], "cuda")[gpu_target] is True
    assert targets(report["configurations"]["behind"], "cuda")[gpu_target] is False
    assert gpu_target not in targets(report["configurations"]["ahead"])
    text = summary(report)
    assert f"| target: {gpu_target} | met | **not met** |" in text
    assert "- **GPU**: NVIDIA H200; every server's workers share it." in text
    assert "Servers: (a) our BentoML service, 16 workers;" in text


def test_refreshing_a_report_recomputes_its_ratios_and_targets_and_keeps_its_measurements() -> None:
    report = _report()
    for section_ in report["configurations"].values():
        section_["ratios"], section_["targets"] = {"stale": 1.0}, {"an old target": True}
    measured = copy.deepcopy(report["configurations"]["ahead"]["servers"])
    refresh_derived(report)
    ahead = report["configurations"]["ahead"]
    assert ahead["ratios"] == ratios(ahead) and ahead["targets"] == targets(ahead)
    assert ahead["servers"] == measured


# Validation throughput.


def test_validation_report_and_readme_are_rendered_from_the_committed_json() -> None:
    result = _json("validation.json")
    assert bench_validation.markdown(result) == (RESULTS / "validation.md").read_text()
    assert section(README.read_text(), "validation") == bench_validation.summary(result)
    serial, parallel = result["single_process"]["runs"], result["parallel"]["runs"]
    assert result["speedup"] == round(statistics.median(serial) / statistics.median(parallel), 2)


def test_validation_conclusion_follows_the_runs() -> None:
    result = copy.deepcopy(_json("validation.json"))
    result["repeats"] = 3
    result["single_process"]["runs"] = [5.0, 5.0, 6.0]
    result["parallel"]["runs"] = [6.0, 5.5, 5.0]
    result["speedup"], result["speedup_pairwise_median"] = 0.91, 0.91
    result["load_average_1min"] = {"before": 0.1, "after": 1.9}
    text = bench_validation.summary(result)
    assert (
        "Parallel decoding was not faster than one process: 0.91x on the medians, 0.91x as the median of the"
        " per-pair ratios, which range from 0.83x to 1.20x; parallel was faster in 1 of the 3 pairs." in text
    )
    assert (
        "1-minute load average 0.1 before and 1.9 after: the machine was otherwise idle when the run started." in text
    )


# Incremental rebuilds.


def test_rebuild_report_and_readme_are_rendered_from_the_committed_json() -> None:
    report = _json("rebuild.json")
    assert bench_rebuild.markdown(report) == (RESULTS / "rebuild.md").read_text()
    assert section(README.read_text(), "rebuild") == bench_rebuild.summary(report)


def test_rebuild_conclusions_follow_the_scenarios() -> None:
    report = copy.deepcopy(_json("rebuild.json"))
    report["results"] = report["results"][:1]
    scenarios = report["results"][0]["scenarios"]
    scenarios[0]["seconds"] = 10.0
    scenarios[1]["seconds"] = 0.5
    scenarios[2].update(seconds=4.0, images_decoded=1, trained=False)
    lines = bench_rebuild.conclusions(report["results"])
    assert (
        lines[2] == "- **no-op rebuild**: 5.0 % of a full build; materialized nothing; decoded no image; no retraining."
    )
    assert lines[3] == (
        "- **one image added**: 40.0 % of a full build; materialized raw_images, validated_images, trained_model,"
        " model_evaluation, monitoring_baseline, bento, model_promotion; images decoded (of the full build's): sample"
        " digits 1 of 1,797;"
        " no retraining."
    )


def test_the_rebuild_benchmark_edits_evaluation_code_that_exists() -> None:
    # The scenario "evaluation code changed" rewrites this line in a copy of the project; without it the scenario
    # would measure nothing (the benchmark then stops with a message).
    source = (ROOT / "mlops_assets" / "lib" / "models" / "evaluation.py").read_text()
    assert source.count(bench_rebuild.EVALUATION_EDIT[0]) == 1


# Training throughput.


def test_training_report_and_readme_are_rendered_from_the_committed_json() -> None:
    result = _json("training.json")
    assert training_report.markdown(result) == (RESULTS / "training.md").read_text()
    assert section(README.read_text(), "training") == training_report.summary(result)
    assert result["machine"]["device"] in ("cpu", "cuda") and result["uptime"]["before"]
    assert [dataset["name"] for dataset in result["datasets"]] == ["digits", "rgb64"]
    for dataset in result["datasets"]:
        assert dataset["derived"] == training_report.derive(dataset), dataset["name"]
        assert set(dataset["derived"]["variants"]) >= {"plugin", "bare", "plugin_fast", "bare_fast"}


def _training_run(variant: str, repeat: int, call: str, epochs: list[float], weights: str = "") -> dict:
    run = {
        "variant": variant,
        "repeat": repeat,
        "call": call,
        "epoch_wall_s": epochs,
        "epoch_cpu_s": [2 * seconds for seconds in epochs],
        "final": {"train_loss": 0.5, "val_loss": 0.4, "val_accuracy": 0.9},
    }
    return {**run, "weights_sha256": weights} if weights else run


def _training_dataset(plugin_s: tuple[float, float], weights: tuple[str, str]) -> dict:
    """Two repeats, 100 training images, three epochs per run (the first, 9 s, is set-up and left out); the plug-in's
    deterministic epochs take `plugin_s[repeat]` seconds."""
    runs = []
    for repeat in range(2):
        seconds = plugin_s[repeat]
        runs += [
            _training_run("plugin", repeat, "plugin", [9.0, seconds, seconds], weights[repeat]),
            _training_run("bare", repeat, "plugin", [9.0, 0.8, 0.8]),
            _training_run("bare_fast", repeat, "plugin", [9.0, 0.5, 0.5]),
            _training_run("plugin_fast", repeat, "plugin_fast", [9.0, 0.5, 0.5], weights[repeat]),
            _training_run("bare", repeat, "plugin_fast", [9.0, 1.0, 1.0]),
            _training_run("bare_fast", repeat, "plugin_fast", [9.0, 0.5, 0.5]),
        ]
    return {
        "name": "demo",
        "description": "demo images",
        "input_shape": [1, 8, 8],
        "train_images": 100,
        "val_images": 20,
        "epochs_per_run": 3,
        "runs": runs,
    }


def test_training_ratios_pair_epochs_that_ran_side_by_side() -> None:
    derived = training_report.derive(_training_dataset((1.0, 1.0), ("a", "a")))
    # Beside the plug-in's deterministic run the bare loop took 0.8 s per epoch against the plug-in's 1.0 s.
    assert derived["ratios"]["plugin/bare"] == {"median": 0.8, "repeats": [0.8, 0.8], "pairs": 4, "via": None}
    assert derived["target_met"] is False
    assert derived["ratios"]["plugin_fast/bare_fast"]["median"] == 1.0
    # The bare loops shared both plug-in calls: 0.5/0.8 twice and 0.5/1.0 twice per repeat.
    assert derived["ratios"]["bare/bare_fast"]["median"] == pytest.approx(0.562, abs=1e-3)
    # The plug-in's two runs are compared through the bare loop without determinism: (0.5 / 1.0) / (0.5 / 0.5).
    assert derived["ratios"]["plugin/plugin_fast"] == {
        "median": 0.5,
        "repeats": [0.5, 0.5],
        "pairs": 8,
        "via": "bare_fast",
    }
    plugin = derived["variants"]["plugin"]
    assert plugin == {
        "images_per_s": 100.0,
        "cpu_ms_per_image": 20.0,
        "epochs_measured": 4,
        "final_val_accuracy": 0.9,
        "identical_weights": True,
    }
    assert derived["variants"]["bare"]["images_per_s"] == pytest.approx(111.1)
    assert derived["variants"]["bare"]["identical_weights"] is None


def test_training_verdicts_and_conclusions_follow_the_measurements() -> None:
    result = {
        "machine": {"device": "cpu", "processor": "x86_64", "cores": 2, "torch": "2.13.0+cpu", "torch_threads": 2},
        "settings": {"batch_size": 64, "learning_rate": 0.001, "seed": 0, "repeats": 2, "amp": False, "width": 32},
        "load_average_1min": {"before": 0.2, "after": 0.3},
        "uptime": {"before": "0.20, 0.10, 0.05", "after": "0.30, 0.12, 0.06"},
        "one_off_imports_s": 3.2,
        "datasets": [],
    }
    cases = (("slow", (1.0, 1.0), ("a", "b")), ("fast", (0.7, 0.7), ("c", "c")), ("noisy", (1.0, 0.4), ("d", "d")))
    for name, plugin_s, weights in cases:
        dataset = {**_training_dataset(plugin_s, weights), "name": name, "description": f"{name} images"}
        result["datasets"].append({**dataset, "derived": training_report.derive(dataset)})
    text = training_report.summary(result)
    # The bare loop's determinism: 0.5 s against 0.8 s and 1.0 s, median 0.5625; CPU seconds are twice the wall's.
    bare = "costs 44 % of the throughput (repeats 44 % to 44 %), CPU time per image +80 %"
    assert (
        "| slow images | 0.80x | 0.80, 0.80 | **not met** | 1.00x |"
        f" costs 50 % of the throughput (repeats 50 % to 50 %), CPU time per image +100 % | {bare} |" in text
    )
    # 0.8 / 0.7: the plug-in ahead of the bare loop; its determinism: (0.5 / 0.7) / (0.5 / 0.5).
    assert (
        "| fast images | 1.14x | 1.14, 1.14 | met | 1.00x |"
        f" costs 29 % of the throughput (repeats 29 % to 29 %), CPU time per image +40 % | {bare} |" in text
    )
    # One repeat says determinism costs 50 %, the other that it gains 25 %: the load's noise, not a cost.
    assert (
        "| noisy images | 1.40x | 0.80, 2.00 | met | 1.00x | no wall-clock cost distinguishable from the load's"
        " noise (repeats -25 % to 50 %), CPU time per image +40 % |" in text
    )
    assert (
        "- **slow images**: the plug-in's loop ran at 0.80x the bare loop's images/s (target 0.9x: **not met**;"
        " medians of the repeats 0.80-0.80, 4 epoch pairs). Its deterministic runs gave **different** weights."
        " Deterministic algorithms, for the plug-in: costs 50 % of the throughput (repeats 50 % to 50 %), CPU time"
        f" per image +100 %; for the bare loop: {bare}." in text
    )
    assert "Its deterministic runs gave bit-identical weights." in text.split("- **fast images**")[1]
    assert "Load average (1, 5, 15 min): 0.20, 0.10, 0.05 before the run, 0.30, 0.12, 0.06 after." in text
    assert "Not in any epoch: the 3.2 s every training process pays once" in text


# The generated README sections and the benchmarks' imports.


def test_a_generated_section_is_replaced_between_its_markers_only() -> None:
    text = (
        "before\n<!-- generated: demo, from x by `y`; do not edit by hand -->\nold\n<!-- end generated: demo -->\n"
        "<!-- generated: other, from x by `y`; do not edit by hand -->\nkept\n<!-- end generated: other -->\nafter\n"
    )
    replaced = replace_section(text, "demo", "new 1\nnew 2\n")
    assert replaced == text.replace("\nold\n", "\nnew 1\nnew 2\n")
    assert section(replaced, "demo") == "new 1\nnew 2\n"
    assert section(replaced, "other") == "kept\n"


def test_a_missing_section_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="README.md has no generated section 'serving': restore its two marker"):
        section("no markers here\n", "serving")


def test_benchmarks_do_not_import_the_test_package() -> None:
    offenders = []
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {m}" for m in modules if m.split(".")[0] == "mlops_assets_tests"]
    assert offenders == []


# The dataset store.


def test_dataset_store_report_and_readme_are_rendered_from_the_committed_json() -> None:
    from benchmarks import bench_dataset_store

    report = _json("dataset_store.json")
    assert bench_dataset_store.markdown(report) == (RESULTS / "dataset_store.md").read_text()
    assert section(README.read_text(), "dataset_store") == bench_dataset_store.summary(report)


def test_adding_one_image_to_the_dataset_adds_one_blob() -> None:
    rows = {row["scenario"]: row for row in _json("dataset_store.json")["scenarios"]}
    one = rows["one image added"]
    assert (one["images"], one["blobs_added"], rows["unchanged folder kept again"]["blobs_added"]) == (20_001, 1, 0)
    # The image, the manifest's tree and the one chunk of entries it changed; laying a version out adds nothing.
    assert one["files_added"] == 3
    assert rows["new version laid out as a folder"]["bytes_added"] == 0


def _derived_with(repeats: list[float]) -> dict:
    figures = {"cpu_ms_per_image": 1.0}
    return {
        "ratios": {"plugin/plugin_fast": {"median": statistics.median(repeats), "repeats": repeats}},
        "variants": {"plugin": figures, "plugin_fast": figures},
    }


@pytest.mark.parametrize(
    ("repeats", "start"),
    [
        ([0.95], "5 % slower in a single repeat, too few to tell from the load's noise"),
        ([1.10], "10 % faster in a single repeat, too few to tell from the load's noise"),
        ([0.95, 0.97, 0.90], "costs 5 % of the throughput (repeats 3 % to 10 %)"),
        ([1.05, 1.10], "costs nothing: ran 8 % faster (repeats -10 % to -5 %)"),
        ([0.95, 1.05], "no wall-clock cost distinguishable from the load's noise (repeats -5 % to 5 %)"),
    ],
)
def test_what_determinism_costs_is_worded_from_the_repeats_agreeing(repeats: list[float], start: str) -> None:
    # One repeat agrees with itself whatever the noise: it is never worded as a cost or a gain.
    assert training_report.determinism_cost(_derived_with(repeats), "plugin", "plugin_fast").startswith(start)


@pytest.mark.parametrize(("before", "busy"), [(0.3, False), (0.6, True)])
def test_a_training_run_is_called_busy_by_the_load_before_it_alone(before: float, busy: bool) -> None:
    """The load after the run counts the benchmark's own threads."""
    result = _json("training.json")
    result = {**result, "load_average_1min": {"before": before, "after": 2.5}}
    assert ("other work competed for the machine" in training_report.summary(result)) is busy
