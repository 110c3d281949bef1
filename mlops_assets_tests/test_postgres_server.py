"""The test PostgreSQL server and the script that installs its binaries: a server that stops leaves no process, port
or directory behind, and the script is a silent no-op where PostgreSQL is installed."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import psutil
import psycopg2
import pytest

from mlops_assets_tests.postgres_server import ENSURE_SCRIPT, PROJECT_ROOT, PostgresServer, find_binaries


def test_a_stopped_server_leaves_no_process_port_or_directory_behind() -> None:
    server = PostgresServer(find_binaries()).start()
    try:
        url = server.new_database("stray")
        # An open session has its own backend process, which a fast stop must end too.
        client = psycopg2.connect(url, connect_timeout=10)
        processes = server.processes()
        backend = client.get_backend_pid()
        assert backend in {process.pid for process in processes}
        # postmaster, its helper processes and the client's backend, all run by the server's own user.
        assert len(processes) >= 4
        directory, port = server.directory, server.port
    finally:
        server.stop()
    client.close()

    assert [process.pid for process in processes if process.is_running()] == []
    assert not directory.exists()
    assert server.directory is None
    with pytest.raises(psycopg2.OperationalError, match=rf"port {port} failed: Connection refused"):
        psycopg2.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=10)
    server.stop()  # stopping again is a no-op


def test_the_session_server_answers_and_gives_each_test_a_fresh_database(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.new_database("fresh"), postgres_server.new_database("fresh")
    assert first != second
    connection = psycopg2.connect(second, connect_timeout=10)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_database(), count(*) FROM pg_tables WHERE schemaname = 'public'")
            assert cursor.fetchone() == (second.rsplit("/", 1)[1], 0)
            cursor.execute("SHOW listen_addresses")
            assert cursor.fetchone() == ("127.0.0.1",)
    finally:
        connection.close()


def _fake_apt_get(directory: Path) -> Path:
    """An `apt-get` that only records that it was called."""
    directory.mkdir()
    calls = directory / "calls"
    program = directory / "apt-get"
    program.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    program.chmod(0o755)
    return calls


def test_the_install_script_is_a_silent_no_op_where_postgresql_is_installed(tmp_path: Path) -> None:
    calls = _fake_apt_get(tmp_path / "bin")
    completed = subprocess.run(
        ["sh", str(ENSURE_SCRIPT)],
        env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (completed.returncode, completed.stdout, completed.stderr) == (0, "", "")
    assert not calls.exists()  # nothing was installed


def test_the_install_script_says_what_to_do_where_it_cannot_install(tmp_path: Path) -> None:
    empty = tmp_path / "lib"
    empty.mkdir()
    # No PostgreSQL under the (empty) library folder, nothing on PATH: neither the binaries nor apt-get.
    completed = subprocess.run(
        [shutil.which("sh"), str(ENSURE_SCRIPT)],
        env={"POSTGRES_LIB_DIR": str(empty), "PATH": str(tmp_path / "nothing")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    assert completed.stdout == ""
    assert completed.stderr.splitlines() == [
        "error: PostgreSQL's server binaries (initdb, pg_ctl) are missing and apt-get is not available here; install "
        "PostgreSQL 13 or later with the system's package manager, then run the tests again."
    ]


def test_the_fixture_and_the_script_look_in_the_same_place(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    installed = find_binaries()
    assert installed is not None and (installed / "initdb").is_file()
    monkeypatch.setenv("POSTGRES_LIB_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    assert find_binaries() is None
    version = tmp_path / "17" / "bin"
    version.mkdir(parents=True)
    for program in ("initdb", "pg_ctl"):
        (version / program).write_text("")
    assert find_binaries() == version


SESSION_TEST = """
import json, os
from mlops_assets_tests.postgres_server import postgres_server  # noqa: F401


def test_uses_the_server(postgres_server):
    postgres_server.new_database("session")
    with open(os.environ["SERVER_RECORD"], "w") as record:
        json.dump({"pids": [p.pid for p in postgres_server.processes()], "directory": str(postgres_server.directory),
                   "port": postgres_server.port}, record)
"""


def test_the_session_fixture_leaves_no_process_behind_when_the_session_ends(tmp_path: Path) -> None:
    """A whole pytest session using the fixture, in its own process: once it has ended, none of the server's
    processes (postmaster, helpers, backends) is alive and its directory is gone."""
    (tmp_path / "test_session.py").write_text(SESSION_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's settings
    record = tmp_path / "server.json"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "test_session.py")],
        cwd=tmp_path,
        env={**os.environ, "SERVER_RECORD": str(record), "PYTHONPATH": str(PROJECT_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    server = json.loads(record.read_text())
    assert len(server["pids"]) >= 4  # postmaster, its helpers and the test's backend were seen running
    assert [pid for pid in server["pids"] if psutil.pid_exists(pid) and _is_postgres(pid)] == []
    assert not Path(server["directory"]).exists()
    with pytest.raises(psycopg2.OperationalError, match="Connection refused"):
        psycopg2.connect(f"postgresql://postgres@127.0.0.1:{server['port']}/postgres", connect_timeout=10)


def _is_postgres(pid: int) -> bool:
    """Whether `pid` is (still) a PostgreSQL process, not a new process that was given the same number."""
    try:
        return psutil.Process(pid).name() in ("postgres", "postmaster")
    except psutil.NoSuchProcess:
        return False
