"""`mlops monitor`'s printed summary: the verdict per signal, the checks and the deployment comparison line."""

from pathlib import Path

import pytest

from mlops_assets.cli_monitoring import format_monitoring
from mlops_assets.lib.monitoring.verdicts import grade
from mlops_assets.runner import RunSummary


def _summary(**extra) -> RunSummary:
    found = {
        "model_version": 3,
        "model_tag": "image-classifier:abc",
        "environment": "local",
        "stage": "staging",
        "day": "2026-11-03",
        "num_predictions": 400,
        "log_files": 2,
        "log_source": "predictions",
        "other_versions": {},
        "log_problems": "none",
        "overall": "drift",
        "signals": [grade("predicted_label", 0.3, "jensenshannon", 0.25, 0.5).to_dict()],
        **extra,
    }
    return RunSummary("run-1", True, materialized={"prediction_monitoring": found})


def test_monitor_prints_each_signal_with_its_statistic_and_the_comparison_line_when_recorded():
    comparison = "no drift against image-classifier:old (300 in the 24 h before)"
    lines = format_monitoring(_summary(deployment_comparison=comparison)).splitlines()
    assert lines[0] == "Dagster run run-1: SUCCESS"
    # Which stage's traffic the verdicts are for.
    assert lines[1] == (
        "  monitored:     version 3 (image-classifier:abc) in local, stage staging, on 2026-11-03: 400 logged "
        "prediction(s) (2 log file(s) in predictions)"
    )
    assert "    predicted_label: drift (jensenshannon 0.3; drift at 0.25, severe at 0.5)" in lines
    assert f"  vs previous:   {comparison}" in lines
    assert lines.index(f"  vs previous:   {comparison}") == lines.index(next(x for x in lines if "checks:" in x)) - 1


def test_monitor_prints_no_comparison_line_when_none_was_recorded():
    assert "vs previous" not in format_monitoring(_summary())


def test_monitor_prints_the_report_as_an_absolute_path_under_mlops_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The metadata holds the report relative to MLOPS_HOME; printed so that it opens from any folder.
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    relative = "artifacts/prediction_monitoring/local-staging-2026-11-03-run1/report.html"
    lines = format_monitoring(_summary(report=relative)).splitlines()
    assert f"  report:        {tmp_path.resolve() / 'home' / relative}" in lines


def test_monitor_prints_a_report_url_as_it_is():
    url = "gs://bucket/mlops/artifacts/prediction_monitoring/local-staging-2026-11-03-run1/report.html"
    assert f"  report:        {url}" in format_monitoring(_summary(report=url)).splitlines()
