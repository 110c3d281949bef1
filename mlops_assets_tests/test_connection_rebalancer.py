"""A backlogged worker closes at most one keep-alive connection per interval; an idle one never does."""

import pytest

from mlops_assets.lib.serving.connection_rebalancer import ConnectionRebalancer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_backlogged_worker_closes_one_connection_per_interval() -> None:
    clock = FakeClock()
    rebalancer = ConnectionRebalancer(0.25, clock=clock)
    assert rebalancer.should_close(backlogged=True)
    clock.now += 0.125
    assert not rebalancer.should_close(backlogged=True)
    clock.now += 0.125
    assert rebalancer.should_close(backlogged=True)
    assert not rebalancer.should_close(backlogged=True)


def test_an_idle_worker_keeps_its_connections_and_does_not_use_up_the_interval() -> None:
    clock = FakeClock()
    rebalancer = ConnectionRebalancer(0.25, clock=clock)
    assert not rebalancer.should_close(backlogged=False)
    # The idle answer did not count as a close: the first backlogged response may close at once.
    assert rebalancer.should_close(backlogged=True)
    clock.now += 10
    assert not rebalancer.should_close(backlogged=False)


def test_interval_zero_turns_rebalancing_off() -> None:
    rebalancer = ConnectionRebalancer(0, clock=FakeClock())
    assert not any(rebalancer.should_close(backlogged=True) for _ in range(10))


def test_a_negative_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="interval_s must be >= 0"):
        ConnectionRebalancer(-1)
