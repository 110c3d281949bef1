"""Decides which responses close their keep-alive connection, so a busy worker's clients can move to an idle one."""

from __future__ import annotations

import time
from collections.abc import Callable


class ConnectionRebalancer:
    """Closes at most one connection per interval, and only while this worker has more work waiting.

    The server's worker processes share one listening socket, and a keep-alive connection stays with the worker that
    accepted it. The first worker to wake accepts every pending connection, so a handful of clients that connect at
    once can all land on one worker while the others idle, and the server then runs at one worker's pace. Closing a
    connection after a complete response is ordinary HTTP/1.1: the client opens a
    new one, and the kernel hands it to whichever worker accepts first, usually one that is not busy computing.
    Rate-limited so a saturated, balanced server reconnects a few connections a second, not every request.
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0 (0 turns rebalancing off), got {interval_s}")
        self.interval_s = interval_s
        self._clock = clock
        self._last_close: float | None = None

    def should_close(self, backlogged: bool) -> bool:
        """True when the response about to be sent should carry `Connection: close`."""
        if self.interval_s == 0 or not backlogged:
            return False
        now = self._clock()
        if self._last_close is not None and now - self._last_close < self.interval_s:
            return False
        self._last_close = now
        return True
