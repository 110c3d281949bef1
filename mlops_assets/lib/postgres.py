"""PostgreSQL URLs from settings: their form checked and the server reached before anything relies on them.

The project talks to PostgreSQL through psycopg2 (the driver dagster-postgres is written for). SQLAlchemy 2.1 maps a
plain `postgresql://` URL to psycopg 3, which the project does not install, so URLs name the driver:
`postgresql+psycopg2://USER:PASSWORD@HOST:5432/DATABASE`. Where the project builds the engine itself (the model
registry) a plain `postgresql://` URL is read as psycopg2 (`with_psycopg2`).
"""

from __future__ import annotations

import os

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.pool import NullPool

from mlops_assets.lib.settings_validation import ConfigError

BACKEND = "postgresql"
DRIVER = "psycopg2"
URL_FORM = "postgresql+psycopg2://USER:PASSWORD@HOST:5432/DATABASE"
# Seconds before a connection to a server that does not answer (a dropped packet, a wrong address) fails.
CONNECT_TIMEOUT_S = 10


def parse(url: str) -> URL | None:
    """The URL parsed, or None when it is not a database URL at all."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        return None


def is_postgres(url: str) -> bool:
    parsed = parse(url)
    return parsed is not None and parsed.drivername.split("+")[0] == BACKEND


def with_psycopg2(url: str) -> str:
    """A plain `postgresql://` URL with the psycopg2 driver named; any other URL as it is."""
    parsed = parse(url)
    if parsed is None or parsed.drivername != BACKEND:
        return url
    return parsed.set(drivername=f"{BACKEND}+{DRIVER}").render_as_string(hide_password=False)


def redacted(url: str) -> str:
    """The URL with its password replaced by `***`, for messages and logs."""
    parsed = parse(url)
    return parsed.render_as_string(hide_password=True) if parsed is not None else "(not a URL)"


def form_problem(url: str, plain_allowed: bool) -> str | None:
    """What is wrong with the URL's form for this project (None when nothing): not a URL, not PostgreSQL, or another
    driver than psycopg2 (`plain_allowed`: a plain `postgresql://` is read as psycopg2 by the caller)."""
    parsed = parse(url)
    if parsed is None:
        return f"not a database URL; expected {URL_FORM}"
    backend, _, driver = parsed.drivername.partition("+")
    if backend != BACKEND:
        return f"not a PostgreSQL URL ({parsed.drivername}://...); expected {URL_FORM}"
    if driver == DRIVER or (not driver and plain_allowed):
        return None
    if not driver:
        return (
            f"name the driver: {URL_FORM} (SQLAlchemy reads a plain postgresql:// URL as psycopg 3, which is not "
            "installed; dagster-postgres runs on psycopg2)"
        )
    return f"driver {driver!r} is not installed; use psycopg2: {URL_FORM}"


def connection_problem(url: str, timeout_s: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why no session can be opened on the URL's server and database (PostgreSQL's own reason: connection refused,
    unknown host, no such database, authentication failed, ...), None when one can. Waits at most `timeout_s`."""
    engine = create_engine(with_psycopg2(url), poolclass=NullPool, connect_args={"connect_timeout": int(timeout_s)})
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except DBAPIError as error:
        return reason(error.orig)
    finally:
        engine.dispose()
    return None


def sentence(text: str) -> str:
    """`text` ending in a full stop (or its own `?`/`!`), so a message can go on after it."""
    text = text.rstrip()
    return text if text.endswith((".", "?", "!")) else f"{text}."


def reason(error: BaseException | None) -> str:
    """libpq's message in one line of sentences, without the severity prefix (e.g. `connection to server at "h", port
    1 failed: Connection refused. Is the server running on that host and accepting TCP/IP connections?`)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    if not lines:
        return sentence(type(error).__name__)
    lines[0] = lines[0].replace("FATAL:  ", "").replace("FATAL: ", "")
    return " ".join(sentence(line) for line in lines)


def _source(variable: str, purpose: str) -> str:
    return f"environment variable {variable} ({purpose})"


def unset(variable: str, purpose: str) -> ConfigError:
    """The error for a PostgreSQL URL variable that is not set."""
    return ConfigError(_source(variable, purpose), [f"not set; set it to {URL_FORM}"])


def checked_url(variable: str, purpose: str, plain_allowed: bool) -> str:
    """The PostgreSQL URL in the environment variable `variable`: set, of the right form (`form_problem`) and
    reachable (`connection_problem`). Raises ConfigError naming the variable, what it is for (`purpose`), the URL
    without its password, and what to fix."""
    url = os.environ.get(variable, "")
    if not url:
        raise unset(variable, purpose)
    problem = form_problem(url, plain_allowed)
    if problem is None:
        reason = connection_problem(url)
        if reason is not None:
            problem = f"cannot connect: {reason} Point it at a running PostgreSQL server and an existing database."
    if problem is not None:
        raise ConfigError(_source(variable, purpose), [f"{redacted(url)!r}: {problem}"])
    return url
