"""Two real processes promoting different versions at once on one registry (a SQLite file, a PostgreSQL database):
one production version, always."""

import multiprocessing
import time
from pathlib import Path

import pytest

from mlops_assets.lib.registry.registry import ModelRegistry, RegistryError
from mlops_assets_tests.registry_helpers import registered

SUCCESSES = 10


def _promote_repeatedly(url: str, number: int, barrier, results) -> None:
    """Take production SUCCESSES times: each success needs the other process to have taken it in between."""
    with ModelRegistry(url, "local") as models:
        barrier.wait()
        done, refused, deadline = 0, 0, time.monotonic() + 120
        while done < SUCCESSES and time.monotonic() < deadline:
            try:
                models.promote(number, "production", actor=f"process-{number}", reason="race")
                done += 1
            except RegistryError as error:
                # The only refusal possible here: the other process has not taken production back yet.
                assert "already in production" in str(error), error
                refused += 1
        results.put((number, done))


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/registry.db"
    return request.getfixturevalue("postgres_server").new_database("race")


def test_two_processes_promoting_at_once_leave_exactly_one_production_version(registry_url: str) -> None:
    url = registry_url
    with ModelRegistry(url, "local") as models:
        one, two = registered(models, 1), registered(models, 2)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [context.Process(target=_promote_repeatedly, args=(url, n, barrier, results)) for n in (one, two)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=180)
        assert worker.exitcode == 0
    promotions = dict(results.get(timeout=5) for _ in workers)

    with ModelRegistry(url, "local") as models:
        summary = models.state_summary()
        history = models.history()
    assert promotions == {one: SUCCESSES, two: SUCCESSES}
    assert len(summary["production"]) == 1
    assert sum(promotions.values()) == sum(1 for e in history if e.action == "promote")
    # Replaying the audit log reproduces the final state and never passes through two production versions.
    status: dict[int, str] = {}
    for entry in history:
        assert status.get(entry.version) == entry.from_status, entry
        status[entry.version] = entry.to_status
        assert list(status.values()).count("production") <= 1
    assert [n for n, s in status.items() if s == "production"] == summary["production"]
