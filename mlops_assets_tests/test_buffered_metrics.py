"""Metric updates written in batches: the metric files end up with exactly what one write per update gives."""

import logging
import os
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.multiprocess import MultiProcessCollector

from mlops_assets.lib.serving import buffered_metrics
from mlops_assets.lib.serving.buffered_metrics import MetricWriteBuffer, buffer_metric_writes

pytestmark = pytest.mark.timeout(60)


def _make_updates(registry: CollectorRegistry) -> Counter:
    """The kinds of update a prediction makes: counters, a histogram, an in-progress gauge, a last-time gauge."""
    requests = Counter("requests", "requests", ["endpoint"], registry=registry)
    duration = Histogram("duration_seconds", "duration", ["endpoint"], buckets=(0.01, 0.1, 1), registry=registry)
    in_progress = Gauge("in_progress", "in progress", ["endpoint"], multiprocess_mode="livesum", registry=registry)
    last = Gauge("last_request_seconds", "last request", registry=registry)
    for index in range(30):
        endpoint = "/predict" if index % 3 else "/feedback"
        in_progress.labels(endpoint=endpoint).inc()
        last.set(1000 + index)
        requests.labels(endpoint=endpoint).inc()
        duration.labels(endpoint=endpoint).observe(index / 100)
        in_progress.labels(endpoint=endpoint).dec()
    in_progress.labels(endpoint="/predict").inc()  # one still in progress
    last.inc(0.5)  # an increment after a set: applied to the set value
    return requests


def _read(directory: Path) -> dict:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in registry.collect()
        for sample in family.samples
    }


@pytest.fixture
def multiprocess(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A fresh multiprocess value class writing under a folder of the test's own; returns (use, folder)."""

    def use(name: str) -> Path:
        directory = tmp_path / name
        directory.mkdir()
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
        monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
        return directory

    monkeypatch.setattr(buffered_metrics, "_buffer", None)
    yield use
    if buffered_metrics._buffer is not None:
        buffered_metrics._buffer.close()


def test_the_files_hold_what_one_write_per_update_gives(multiprocess) -> None:
    one_by_one = multiprocess("one-by-one")
    _make_updates(CollectorRegistry())
    expected = _read(one_by_one)

    batched = multiprocess("batched")
    buffer = buffer_metric_writes(interval_s=3600)  # flushed by hand below, not by the writer thread
    _make_updates(CollectorRegistry())
    assert not any(_read(batched).values())  # every series created at zero; the updates are queued
    buffer.flush()
    assert _read(batched) == expected
    assert expected[("requests_total", (("endpoint", "/predict"),))] == 20
    assert [value for (name, _), value in expected.items() if name == "last_request_seconds"] == [1029.5]
    assert expected[("in_progress", (("endpoint", "/predict"),))] == 1


def test_the_writer_thread_applies_the_queue_within_a_few_intervals(multiprocess) -> None:
    folder = multiprocess("threaded")
    assert buffer_metric_writes(interval_s=0.05) is buffer_metric_writes(interval_s=0.05)  # installed once
    Counter("answers", "answers", registry=CollectorRegistry()).inc(3)
    deadline = time.monotonic() + 10
    while _read(folder).get(("answers_total", ())) != 3:
        assert time.monotonic() < deadline, "the writer thread never wrote the queued increment"
        time.sleep(0.05)


def test_reading_a_value_in_the_process_applies_the_queue_first(multiprocess) -> None:
    multiprocess("read")
    buffer_metric_writes(interval_s=3600)
    gauge = Gauge("depth", "depth", multiprocess_mode="livesum", registry=CollectorRegistry())
    gauge.inc(4)
    gauge.dec(1)
    assert gauge._value.get() == 3


def test_closing_writes_what_is_queued(multiprocess) -> None:
    folder = multiprocess("closing")
    buffer = buffer_metric_writes(interval_s=3600)
    Counter("last_words", "last words", registry=CollectorRegistry()).inc()
    buffer.close()
    assert _read(folder)[("last_words_total", ())] == 1


def test_in_single_process_mode_nothing_is_patched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "ValueClass", values.MutexValue)
    monkeypatch.setattr(buffered_metrics, "_buffer", None)
    inc = values.MutexValue.inc
    assert buffer_metric_writes() is None
    assert values.MutexValue.inc is inc


def test_updates_of_one_series_become_one_write_with_their_combined_value() -> None:
    writes: list[tuple] = []
    buffer = MetricWriteBuffer(
        lambda value, amount: writes.append((value, "inc", amount)),
        lambda value, number, timestamp: writes.append((value, "set", number, timestamp)),
        interval_s=3600,
    )
    try:
        updates = buffer._updates
        updates.extend([("a", None, 1.0), ("a", None, 2.0), ("b", 0.0, 5.0), ("b", None, 1.0), ("c", None, 1.0)])
        updates.append(("c", 7.0, 4.0))  # a set with a timestamp replaces the increment before it
        buffer.flush()
    finally:
        buffer.close()
    assert sorted(writes) == [("a", "inc", 3.0), ("b", "set", 6.0, None), ("c", "set", 4.0, 7.0)]


def test_a_series_that_cannot_be_written_is_retried_and_the_others_are_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    written: list[tuple] = []
    failures = {"a": [OSError("disk full")]}

    def write_inc(value, amount: float) -> None:
        if failures.get(value):
            raise failures[value].pop()
        written.append((value, amount))

    buffer = MetricWriteBuffer(write_inc, lambda *args: None, interval_s=3600)
    try:
        buffer._updates.extend([("a", None, 1.0), ("b", None, 2.0), ("c", None, 3.0)])
        with caplog.at_level(logging.WARNING, logger=buffered_metrics.__name__):
            buffer.flush()
        assert sorted(written) == [("b", 2.0), ("c", 3.0)]
        assert "Writing 1 metric series failed (OSError: disk full)" in caplog.text
        buffer._updates.append(("a", None, 4.0))  # a later update of the failed series adds to it
        buffer.flush()
        assert sorted(written) == [("a", 5.0), ("b", 2.0), ("c", 3.0)]
    finally:
        buffer.close()


def test_the_writer_thread_survives_an_unexpected_error(caplog: pytest.LogCaptureFixture) -> None:
    written: list[float] = []
    buffer = MetricWriteBuffer(lambda value, amount: written.append(amount), lambda *args: None, interval_s=0.02)
    try:
        with caplog.at_level(logging.ERROR, logger=buffered_metrics.__name__):
            buffer._updates.append(None)  # not an update: unpacking it fails inside the writer's flush
            deadline = time.monotonic() + 10
            while "Writing the queued metric updates failed" not in caplog.text:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            buffer._updates.append(("a", None, 2.0))
            while written != [2.0]:
                assert time.monotonic() < deadline, written
                time.sleep(0.02)
    finally:
        buffer.close()


def test_a_forked_process_writes_its_own_updates_and_not_its_parents_queue(multiprocess) -> None:
    folder = multiprocess("forked")
    buffer = buffer_metric_writes(interval_s=3600)
    counter = Counter("forked", "forked", registry=CollectorRegistry())
    counter.inc(5)  # queued in the parent
    child = os.fork()
    if child == 0:  # the child: one write per update, its parent's queue not written twice
        try:
            counter.inc(1)
        finally:
            os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    assert _read(folder)[("forked_total", ())] == 1
    buffer.flush()
    assert _read(folder)[("forked_total", ())] == 6
