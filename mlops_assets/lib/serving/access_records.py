"""uvicorn's own access records are not built when no handler would take them.

uvicorn formats an access record (client address, quoted path) for every response whenever its `uvicorn.access`
logger has a handler anywhere up its hierarchy; BentoML's logging gives the root logger one, at level WARNING, so every
record is built and then dropped by the level check. The service's access log is BentoML's own (`serving.access_log`).
"""

from __future__ import annotations

import logging

UVICORN_ACCESS = "uvicorn.access"


def skip_dropped_access_records() -> None:
    """Stop `uvicorn.access` records from reaching the root's handlers while that logger drops INFO records anyway,
    so uvicorn builds none (it checks for handlers per connection); with INFO enabled (debug logging), nothing changes.
    Call in the server process before it takes requests."""
    access = logging.getLogger(UVICORN_ACCESS)
    if not access.handlers and not access.isEnabledFor(logging.INFO):
        access.propagate = False
