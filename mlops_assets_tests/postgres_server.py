"""A real PostgreSQL server for the tests: a temporary data directory, a free loopback port, stopped afterwards.

The server binaries come from the system (`/usr/lib/postgresql/<version>/bin`); where they are missing,
`scripts/ensure_postgres.sh` installs the `postgresql` package first. PostgreSQL refuses to run as root, so as root
`initdb` and `pg_ctl` run as the `postgres` system user. The session fixture `postgres_server` starts one server for
the whole session; `new_database()` gives each test a database of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENSURE_SCRIPT = PROJECT_ROOT / "scripts" / "ensure_postgres.sh"
# Where Debian's packages put each PostgreSQL version's binaries; the variable moves it (as for the script).
DEFAULT_LIB_DIR = "/usr/lib/postgresql"
LIB_DIR_VARIABLE = "POSTGRES_LIB_DIR"
SERVER_USER = "postgres"  # PostgreSQL's own system account (the Debian package creates it)
# Seconds `pg_ctl` waits for the server to start or stop.
PG_CTL_WAIT_S = 60
# Durability off: a test server's data is thrown away, and fsync on a busy disk costs seconds per test.
TEST_SERVER_OPTIONS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))


def find_binaries() -> Path | None:
    """The newest `/usr/lib/postgresql/<version>/bin` (POSTGRES_LIB_DIR, as for the script) holding initdb and pg_ctl,
    else the directory of `pg_ctl` on PATH (other layouts), else None."""
    lib_dir = Path(os.environ.get(LIB_DIR_VARIABLE) or DEFAULT_LIB_DIR)
    candidates = sorted(lib_dir.glob("*/bin"), key=_version_key, reverse=True)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file():
            return directory
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        return Path(on_path).resolve().parent
    return None


def ensure_binaries() -> Path:
    """PostgreSQL's server binaries, installed by the project's script where missing; fails the session with the
    script's output when they cannot be had."""
    found = find_binaries()
    if found is not None:
        return found
    result = subprocess.run(["sh", str(ENSURE_SCRIPT)], capture_output=True, text=True, check=False)
    found = find_binaries()
    if result.returncode != 0 or found is None:
        pytest.fail(
            f"PostgreSQL's server binaries are missing and {ENSURE_SCRIPT.name} could not install them "
            f"(exit {result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}",
            pytrace=False,
        )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """One PostgreSQL server in its own temporary data directory on 127.0.0.1 (trust authentication, user
    `postgres`); `start()` then `stop()`, or use it as a context manager."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.as_other_user = os.geteuid() == 0
        self.directory: Path | None = None
        self.port: int | None = None
        self._databases = itertools.count(1)

    @property
    def data_dir(self) -> Path:
        assert self.directory is not None, "the server was not started"
        return self.directory / "data"

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.binaries / program), *args]
        return ["runuser", "-u", SERVER_USER, "--", *command] if self.as_other_user else command

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        # cwd: the server user may not be allowed into the caller's working directory.
        return subprocess.run(
            self._command(program, *args), cwd=self.directory, capture_output=True, text=True, check=False
        )

    def start(self) -> PostgresServer:
        """initdb a new data directory and start the server on a free loopback port (a few tries: another process
        may take the port between choosing and binding it). Raises RuntimeError with PostgreSQL's own output."""
        # Under the system's temporary directory, not pytest's: pytest's are private to the user running the tests,
        # and the server runs as another user.
        self.directory = Path(tempfile.mkdtemp(prefix="mlops-postgres-"))
        if self.as_other_user:
            shutil.chown(self.directory, SERVER_USER, SERVER_USER)
        initdb = self._run(
            "initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync"
        )
        if initdb.returncode != 0:
            self._remove_directory()
            raise RuntimeError(f"initdb failed: {initdb.stderr.strip() or initdb.stdout.strip()}")
        failures = []
        for _ in range(3):
            self.port = free_port()
            options = [
                f"-p {self.port}",
                f"-k {self.directory}",  # the Unix socket in our directory, not the system's /var/run/postgresql
                "-c listen_addresses=127.0.0.1",
                *(f"-c {option}" for option in TEST_SERVER_OPTIONS),
            ]
            log = str(self.directory / "server.log")
            wait = ["-w", "-t", str(PG_CTL_WAIT_S)]
            started = self._run("pg_ctl", "-D", str(self.data_dir), "-l", log, "-o", " ".join(options), *wait, "start")
            if started.returncode == 0:
                return self
            failures.append(self.log_tail())
        self._remove_directory()
        raise RuntimeError(f"PostgreSQL did not start on a free port; its log: {failures[-1]}")

    def log_tail(self, characters: int = 2000) -> str:
        log = self.directory / "server.log" if self.directory else None
        return log.read_text(errors="replace")[-characters:] if log and log.exists() else "(no log)"

    def postmaster_pid(self) -> int | None:
        """The server's main process (from postmaster.pid), None when it is not running."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError):
            return None

    def processes(self) -> list[psutil.Process]:
        """The server's processes: the postmaster and its children (checkpointer, WAL writer, backends, ...)."""
        pid = self.postmaster_pid()
        if pid is None or not psutil.pid_exists(pid):
            return []
        postmaster = psutil.Process(pid)
        return [postmaster, *postmaster.children(recursive=True)]

    def url(self, database: str = "postgres", driver: str = "postgresql") -> str:
        """A SQLAlchemy/libpq URL for `database` on this server (user postgres, no password: trust)."""
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def execute(self, statement: str, database: str = "postgres") -> None:
        """Run one statement outside a transaction (CREATE DATABASE cannot run inside one)."""
        import psycopg2

        connection = psycopg2.connect(self.url(database), connect_timeout=10)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                cursor.execute(statement)
        finally:
            connection.close()

    def new_database(self, prefix: str = "test") -> str:
        """Create a new, empty database and return its URL."""
        name = f"{prefix}_{next(self._databases)}"
        self.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """`pg_ctl stop -m fast` (connections are closed, the server shuts down cleanly); kills what is left if that
        fails, then removes the data directory. Raises RuntimeError naming any server process still alive after that,
        so a stray server never goes unnoticed."""
        if self.directory is None:
            return
        processes = self.processes()
        if processes:
            wait = ["-w", "-t", str(PG_CTL_WAIT_S)]
            stopped = self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", *wait, "stop")
            if stopped.returncode != 0:
                for process in processes:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        process.send_signal(signal.SIGKILL)
            _, alive = psutil.wait_procs(processes, timeout=PG_CTL_WAIT_S)
            if alive:
                raise RuntimeError(
                    f"PostgreSQL processes {sorted(process.pid for process in alive)} of {self.data_dir} survived "
                    "`pg_ctl stop -m fast` (and SIGKILL where that failed); stop them by hand."
                )
        self._remove_directory()

    def _remove_directory(self) -> None:
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session; each test makes its own database with `new_database()`."""
    server = PostgresServer(ensure_binaries())
    server.start()
    try:
        yield server
    finally:
        server.stop()
