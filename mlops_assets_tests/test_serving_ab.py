"""The serving A/B tool: its report is computed from the recorded runs (ratios per round, then medians), the
committed report is what the renderer makes of the committed runs, and each variant's patches still apply."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks.bench_serving_ab import variant_tree
from benchmarks.serving_ab_report import NAIVE, ABReportError, comparison, experiment_markdown, markdown

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PATCHES = ROOT / "benchmarks" / "ab_patches"
# The order the per-change experiment removes them in (the last one applied first undoes the first change).
CHAIN = ("no-inline", "no-log-backlog", "no-timeout-rewrite", "no-tracing-skip", "no-direct-dispatch")
# Ablations of the concurrency-1 experiments, applied to this tree in this order (any prefix of it, or one alone).
ABLATIONS = ("no-own-metrics", "fixed-request-id", "no-prediction-sampling", "no-hard-case-capture")


def _run(round_: int, requests_per_s: float, p50_ms: float, errors: int = 0) -> dict:
    return {"round": round_, "requests_per_s": requests_per_s, "p50_ms": p50_ms, "p99_ms": 4 * p50_ms, "errors": errors}


def _experiment() -> dict:
    # Three rounds; the machine slows down in round 1 for everyone, which the per-round ratios cancel.
    runs = {
        "before": [_run(0, 100, 10.0), _run(1, 50, 20.0), _run(2, 100, 10.0)],
        "after": [_run(0, 200, 5.0), _run(1, 90, 11.0), _run(2, 220, 4.0)],
        NAIVE: [_run(0, 250, 4.0), _run(1, 100, 10.0), _run(2, 200, 5.0, errors=3)],
    }
    return {
        "description": "a change",
        "note": "2 CPU cores.",
        "reference": "before",
        "variants": {
            "before": {"source": "git:abc", "description": "as it was", "fingerprint": "111"},
            "after": {"source": "this working tree", "description": "with the change", "fingerprint": "222"},
        },
        "rounds": 3,
        "duration_s_per_run": 3,
        "wall_s": 600.0,
        "models": {"digits": {"model_tag": "m:1", "loads": {"c1": runs}}},
    }


def test_ratios_are_medians_of_per_round_ratios() -> None:
    runs = _experiment()["models"]["digits"]["loads"]["c1"]
    versus = comparison(runs, "after", "before")
    # Per round: 2.0, 1.8, 2.2 (req/s); 0.5, 0.55, 0.4 (p50).
    assert versus["throughput"] == pytest.approx(2.0)
    assert (versus["throughput_min"], versus["throughput_max"]) == pytest.approx((1.8, 2.2))
    assert versus["p50"] == pytest.approx(0.5)
    # Against the naive server: 0.8, 0.9, 1.1 (req/s); p50 differences +1, +1, -1 ms.
    naive = comparison(runs, "after", NAIVE)
    assert naive["throughput"] == pytest.approx(0.9)
    assert naive["p50_difference_ms"] == pytest.approx(1.0)


def test_the_table_shows_each_variant_against_the_previous_the_first_and_the_naive_server() -> None:
    lines = experiment_markdown("demo", _experiment())
    before, after, naive = lines[-3:]
    # `before` against (b): per-round ratios 0.4, 0.5, 0.5; p50 differences +6, +10, +5 ms.
    assert before == "| concurrency 1 | `before` | 100 | 10.0 ms | 40.0 ms | 0 |  |  |  | 0.50x | +6.00 ms |"
    assert after == (
        "| concurrency 1 | `after` | 200 | 5.0 ms | 20.0 ms | 0 | 2.00x (1.80-2.20) | 0.50x | 2.00x | 0.90x"
        " | +1.00 ms |"
    )
    assert naive == "| concurrency 1 | (b) naive, uvicorn --workers N | 200 | 5.0 ms | 20.0 ms | 3 |  |  |  |  |  |"
    assert "- `after`: with the change (source: this working tree; files 222)" in lines


def test_a_ratio_without_a_shared_round_is_an_error_saying_to_rerun() -> None:
    runs = {"a": [_run(0, 1, 1.0)], "b": [_run(1, 1, 1.0)]}
    with pytest.raises(ABReportError, match="no round has runs of both a and b; rerun the experiment"):
        comparison(runs, "a", "b")


def test_the_committed_ab_report_is_rendered_from_the_committed_runs() -> None:
    document = json.loads((RESULTS / "serving_ab.json").read_text())
    assert markdown(document) == (RESULTS / "serving_ab.md").read_text()
    for name, experiment in document["experiments"].items():
        for model, section in experiment["models"].items():
            for load, runs in section["loads"].items():
                assert set(runs) == {*experiment["variants"], NAIVE}, (name, model, load)
                assert all(len(server_runs) == experiment["rounds"] for server_runs in runs.values()), (name, load)


def test_the_patches_apply_to_this_tree_one_after_another_and_each_removes_its_change(tmp_path: Path) -> None:
    work = tmp_path / "tree"
    for folder in ("bento", "mlops_assets"):
        shutil.copytree(ROOT / folder, work / folder, ignore=shutil.ignore_patterns("__pycache__"))
    service = work / "bento" / "service.py"
    removed = {
        "no-inline": (service, 'inline_when_idle=self.device == "cpu"'),
        "no-log-backlog": (work / "mlops_assets/lib/serving/prediction_log.py", "self._backlog.append(records)"),
        "no-timeout-rewrite": (work / "mlops_assets/lib/serving/request_timeout_fix.py", "class RequestDeadlines"),
        "no-tracing-skip": (service, "        skip_disabled_tracing()\n"),
        "no-direct-dispatch": (service, "add_asgi_middleware(DirectDispatch"),
    }
    for name in CHAIN:
        path, text = removed[name]
        assert text in path.read_text(), name
        applied = subprocess.run(["git", "apply", str(PATCHES / f"{name}.patch")], cwd=work, capture_output=True)
        assert applied.returncode == 0, (name, applied.stderr.decode())
        assert text not in path.read_text(), name
    assert sorted(path.stem for path in PATCHES.glob("*.patch")) == sorted(CHAIN + ABLATIONS)


def test_each_ablation_applies_alone_and_all_apply_together(tmp_path: Path) -> None:
    service = (ROOT / "bento" / "service.py").read_text()
    removed = {
        "no-own-metrics": "self.batch_size, self.batch_wait = null, null, null",
        "fixed-request-id": "request_id = '0123456789abcdef0123456789abcdef'",
        "no-prediction-sampling": "        sampled = False\n",
        "no-hard-case-capture": None,
    }
    for name in ABLATIONS:
        tree = variant_tree(name, f".+benchmarks/ab_patches/{name}.patch", tmp_path)
        patched = (tree / "bento" / "service.py").read_text()
        assert patched != service, name
        if removed[name] is not None:
            assert removed[name] in patched and removed[name] not in service, name
    together = variant_tree(
        "all", "." + "".join(f"+benchmarks/ab_patches/{name}.patch" for name in ABLATIONS), tmp_path
    )
    patched = (together / "bento" / "service.py").read_text()
    assert all(text in patched for text in removed.values() if text is not None)
    assert "self.capture.keep(" not in patched and "self.capture.keep(" in service


def test_a_variant_names_what_is_wrong_with_its_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="variant x: no patch file benchmarks/ab_patches/missing.patch"):
        variant_tree("x", ".+benchmarks/ab_patches/missing.patch", tmp_path)
    with pytest.raises(ValueError, match=r"variant y: .* holds no bento/service.py and mlops_assets/"):
        variant_tree("y", str(tmp_path), tmp_path)
    tree = variant_tree("z", ".+benchmarks/ab_patches/no-inline.patch", tmp_path)
    assert "inline_when_idle=False" in (tree / "bento" / "service.py").read_text()
    assert 'inline_when_idle=self.device == "cpu"' in (ROOT / "bento" / "service.py").read_text()
