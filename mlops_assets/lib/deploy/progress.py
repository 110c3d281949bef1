"""Deployment progress: each step of a deployment (start, ready, canary, traffic switch, drain) as one log line, which
the deployment assets forward to Dagster's logger so a person watching the run sees where it is."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

LOGGER = logging.getLogger("mlops_assets.deploy")


def step(message: str) -> None:
    """Report one deployment step (a no-op unless someone listens through `reporting_to`)."""
    LOGGER.info(message)


class _Forward(logging.Handler):
    def __init__(self, sink: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink(record.getMessage())


@contextlib.contextmanager
def reporting_to(sink: Callable[[str], None]) -> Iterator[None]:
    """Send the steps reported inside the block to `sink` (e.g. Dagster's `context.log.info`)."""
    handler = _Forward(sink)
    level = LOGGER.level
    LOGGER.addHandler(handler)
    LOGGER.setLevel(logging.INFO)
    try:
        yield
    finally:
        LOGGER.removeHandler(handler)
        LOGGER.setLevel(level)
