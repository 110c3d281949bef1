"""Prediction logs behind one interface: files in a folder, or closed files uploaded to GCS (the emulator), and read
back by the same reader interface wherever they are."""

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster_gcp import GCSResource

from mlops_assets.lib.serving.prediction_log import PredictionLog, prediction_record
from mlops_assets.lib.serving.prediction_store import (
    PREDICTIONS_VARIABLE,
    STAGE_VARIABLE,
    FolderPredictionStore,
    GcsPredictionStore,
    file_stage,
    open_store,
    records,
    stage_from_environment,
    stage_names,
    store_from_environment,
)
from mlops_assets.lib.storage.gcs import parse_gcs_url
from mlops_assets.resources.prediction_logs import GcsPredictionLogs, LocalPredictionLogs
from mlops_assets_tests.gcs_emulator import GcsEmulator

STATISTICS = {"width": 8, "height": 8, "mode": "L", "brightness": 0.3, "contrast": 0.2}
DEADLINE_S = 20


def _record(label: str) -> dict:
    return prediction_record("m:1", label, 0.5, STATISTICS, "/predict")


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {DEADLINE_S} s"
        time.sleep(0.05)


def _gcs_store(emulator: GcsEmulator, bucket: str, spool: Path, rotate_interval_s: float) -> GcsPredictionStore:
    return GcsPredictionStore(
        parse_gcs_url(f"gs://{bucket}/env/predictions"), spool, emulator.client(), rotate_interval_s
    )


def test_a_folder_store_keeps_each_days_file_in_place_and_reads_complete_lines(tmp_path: Path) -> None:
    store = FolderPredictionStore(tmp_path / "predictions")
    log = PredictionLog(store, 1.0, flush_interval_s=0.05)
    for label in ("1", "2", "3"):
        assert log.submit([_record(label)])
    log.close()
    names = store.names()
    assert len(names) == 1 and names[0].startswith(time.strftime("%Y-%m-%d", time.gmtime())), names
    assert [record["label"] for record in records(store)] == ["1", "2", "3"]
    # A writer appending right now may have written part of a line: the reader leaves it out.
    with (store.spool / names[0]).open("a") as handle:
        handle.write('{"label": "4", "conf')
    assert [record["label"] for record in store.read(names[0])] == ["1", "2", "3"]


def test_gcs_logs_upload_each_closed_file_and_keep_nothing_locally(gcs_emulator: GcsEmulator, tmp_path: Path) -> None:
    bucket = gcs_emulator.new_bucket("logs")
    store = _gcs_store(gcs_emulator, bucket, tmp_path / "spool", rotate_interval_s=0.3)
    log = PredictionLog(store, 1.0, flush_interval_s=0.05)
    try:
        assert log.submit([_record("1"), _record("2")])
        # Closed after the rotation interval even though nothing else arrives, then uploaded.
        _wait_for(lambda: len(store.names()) == 1, "the first file's upload")
        assert [record["label"] for record in records(store)] == ["1", "2"]
        assert log.submit([_record("3")])
    finally:
        log.close()
    names = store.names()
    assert len(names) == 2 and names == sorted(names)
    assert [record["label"] for record in records(store)] == ["1", "2", "3"]
    assert all(record["model_version"] == "m:1" for record in records(store))
    assert list((tmp_path / "spool").iterdir()) == []
    assert set(gcs_emulator.objects(bucket)) == {f"env/predictions/{name}" for name in names}


def test_a_file_the_store_cannot_take_is_kept_and_uploaded_once_it_can(
    gcs_emulator: GcsEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bucket = "logs-created-later"
    store = _gcs_store(gcs_emulator, bucket, tmp_path / "spool", rotate_interval_s=0.2)
    log = PredictionLog(store, 1.0, flush_interval_s=0.05)
    try:
        assert log.submit([_record("1")])
        _wait_for(lambda: "will try again" in caplog.text, "the failed upload's warning")
        kept = list((tmp_path / "spool").iterdir())
        assert len(kept) == 1 and kept[0].read_text().count("\n") == 1
        gcs_emulator.client().create_bucket(bucket)
        _wait_for(lambda: not any((tmp_path / "spool").iterdir()), "the retried upload")
    finally:
        log.close()
    assert [record["label"] for record in records(store)] == ["1"]
    assert f"Prediction log {kept[0]} not kept in gs://{bucket}/env/predictions yet (" in caplog.text


def test_files_a_dead_writer_left_in_the_spool_are_uploaded_at_the_next_start(
    gcs_emulator: GcsEmulator, tmp_path: Path
) -> None:
    bucket = gcs_emulator.new_bucket("logs")
    spool = tmp_path / "spool"
    spool.mkdir()
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(finished.stdout)
    left = spool / f"2026-01-01T000000.000000Z.{dead_pid}.jsonl"
    left.write_text('{"label": "left"}\n')
    store = _gcs_store(gcs_emulator, bucket, spool, rotate_interval_s=300)
    PredictionLog(store, 1.0, flush_interval_s=0.05).close()
    assert store.names() == [left.name]
    assert store.read(left.name) == [{"label": "left"}]
    assert not left.exists()


def test_the_service_finds_its_store_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PREDICTIONS_VARIABLE, raising=False)
    local = store_from_environment(tmp_path)
    assert isinstance(local, FolderPredictionStore) and local.spool == tmp_path / "predictions"
    monkeypatch.setenv(PREDICTIONS_VARIABLE, "gs://logs/env/predictions")
    remote = store_from_environment(tmp_path)
    assert isinstance(remote, GcsPredictionStore) and str(remote) == "gs://logs/env/predictions"
    assert remote.spool.parent == tmp_path / "cache" / "predictions"
    assert open_store(str(tmp_path / "elsewhere"), tmp_path).spool == tmp_path / "elsewhere"
    with pytest.raises(ValueError) as malformed:
        open_store("gs://Not A Bucket/x", tmp_path)
    assert str(malformed.value).startswith(
        f"{PREDICTIONS_VARIABLE}: 'gs://Not A Bucket/x' does not start with a bucket"
    )


def test_each_environment_tells_its_servers_where_to_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    # Outside a stage the stage variable is set empty, so one inherited from the caller cannot give the server one.
    assert LocalPredictionLogs().server_environment() == {
        PREDICTIONS_VARIABLE: str(tmp_path / "predictions"),
        STAGE_VARIABLE: "",
    }
    assert LocalPredictionLogs().store().spool == tmp_path / "predictions"
    remote = GcsPredictionLogs(url="gs://store/staging", gcs=GCSResource(project="test"))
    assert remote.server_environment("staging") == {
        PREDICTIONS_VARIABLE: "gs://store/staging/predictions",
        STAGE_VARIABLE: "staging",
    }
    assert (LocalPredictionLogs().is_local(), remote.is_local()) == (True, False)


def test_a_writer_names_its_files_by_stage_and_every_record_carries_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STAGE_VARIABLE, "staging")
    stage = stage_from_environment()
    log = PredictionLog(tmp_path, 1.0, flush_interval_s=0.05, stage=stage)
    log.submit([prediction_record("m:1", "3", 0.9, {}, "/predict", stage=stage)])
    log.close()
    [path] = tmp_path.glob("*.jsonl")
    assert path.name == f"{dt.datetime.now(dt.UTC).date()}.staging.{os.getpid()}.jsonl"
    assert file_stage(path.name) == "staging"
    assert json.loads(path.read_text())["stage"] == "staging"
    # Files written before stages were logged count as unstaged; a reader lists one stage's files by name.
    old = tmp_path / "2026-11-03.77.jsonl"
    old.write_text("")
    store = FolderPredictionStore(tmp_path)
    assert (file_stage(old.name), stage_names(store, "unstaged"), stage_names(store, "staging")) == (
        "unstaged",
        [old.name],
        [path.name],
    )
    monkeypatch.setenv(STAGE_VARIABLE, "")
    assert stage_from_environment() == "unstaged"
    monkeypatch.setenv(STAGE_VARIABLE, "canary")
    with pytest.raises(ValueError) as refused:
        stage_from_environment()
    assert str(refused.value) == (
        "MLOPS_DEPLOYMENT_STAGE = 'canary': expected one of staging, production (set by the deployer), or unset for "
        "a server outside a deployment stage."
    )
