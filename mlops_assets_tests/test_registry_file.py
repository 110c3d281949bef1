"""A damaged registry file is refused by name, with how to restore it, before anything runs; never started over."""

import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_assets.cli import BAD_SETTINGS, FAILED, main
from mlops_assets.lib.errors import DEBUG_VARIABLE
from mlops_assets.lib.registry.database import SQLITE_HEADER, RegistryFileError
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets_tests.registry_helpers import new_version, registered

MLOPS = str(Path(sys.executable).parent / "mlops")
RESTORE = (
    "Restore it from a backup of this home (there is no registry.db.bak-* copy next to it), then run again. To start "
    "a new, empty registry on purpose, move registry.db away first: the versions it held are then unknown to the "
    "registry."
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home of its own for in-process `mlops` commands (what they export into the environment is undone)."""
    home = tmp_path / "home"
    for name in ("MLOPS_HOME", "DAGSTER_HOME", "BENTOML_HOME", "MLOPS_DATASET", "MLOPS_REGISTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv(DEBUG_VARIABLE, "")
    return home


def _with_history(home: Path) -> Path:
    """A home that held a model: a bento in the BentoML store and stored artifacts, as a pipeline run leaves them."""
    (home / "bentoml" / "bentos" / "image-classifier-service" / "abc123").mkdir(parents=True)
    (home / "artifacts" / "trained_model" / "0f0f").mkdir(parents=True)
    return home / "registry.db"


def _run(home: Path, capsys: pytest.CaptureFixture) -> tuple[int, list[str], str]:
    dataset = home.parent / "dataset"
    dataset.mkdir(exist_ok=True)
    code = main(["run", "--dataset", str(dataset)])
    captured = capsys.readouterr()
    return code, captured.err.splitlines(), captured.out


def test_an_empty_registry_next_to_a_history_is_refused_by_name_before_anything_runs(
    home: Path, capsys: pytest.CaptureFixture
) -> None:
    registry = _with_history(home)
    registry.write_bytes(b"")

    code, errors, out = _run(home, capsys)

    assert (code, out) == (FAILED, "")
    assert errors == [
        f"error: The model registry {registry} is empty (0 bytes), but this home holds 1 bento(s) in the BentoML "
        f"store ({home / 'bentoml' / 'bentos'}), stored artifacts ({home / 'artifacts'}): the registry had model "
        f"versions, and opening it would start a new, empty registry and lose their history; it was left untouched. "
        f"{RESTORE}"
    ]
    assert registry.stat().st_size == 0  # not started over
    assert not (home / "dagster" / "history").exists()  # no Dagster instance was created, let alone a run


def test_a_garbage_registry_is_refused_by_name_and_its_newest_backup_restores_it(
    home: Path, capsys: pytest.CaptureFixture
) -> None:
    registry = _with_history(home)
    with ModelRegistry(f"sqlite:///{registry}", "local") as models:
        models.promote(registered(models, 1), "production", actor="test")
    older = registry.with_name("registry.db.bak-20260101T000000.000000Z")
    newer = registry.with_name("registry.db.bak-20260202T000000.000000Z")
    older.write_bytes(b"an older copy")
    shutil.copyfile(registry, newer)
    registry.write_bytes(b"\x00garbage from a bad copy" * 40)

    code, errors, out = _run(home, capsys)

    assert (code, out) == (FAILED, "")
    assert errors == [
        f"error: The model registry {registry} is not a SQLite database (960 bytes starting b'\\x00garbage'); it "
        f"cannot be read and was left untouched. Restore the newest backup with `cp {newer} {registry}` (backups "
        f"next to it: {newer.name}, {older.name}), then run again. To start a new, empty registry on purpose, move "
        "registry.db away first: the versions it held are then unknown to the registry."
    ]
    assert not (home / "dagster" / "history").exists()

    shutil.copyfile(newer, registry)  # as the message says
    assert main(["models", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in listed[2:]] == [["1", "production"]]


def test_a_damaged_sqlite_registry_is_refused_by_name(home: Path, capsys: pytest.CaptureFixture) -> None:
    registry = _with_history(home)
    with ModelRegistry(f"sqlite:///{registry}", "local") as models:
        registered(models, 1)
    registry.write_bytes(registry.read_bytes()[:5000])  # a copy cut short

    assert main(["models", "list"]) == FAILED
    assert capsys.readouterr().err.splitlines() == [
        f"error: The model registry {registry} is damaged (SQLite: database disk image is malformed); it cannot be "
        f"trusted and was left untouched. {RESTORE}"
    ]


def test_an_empty_registry_on_a_new_home_becomes_a_new_registry(home: Path, capsys: pytest.CaptureFixture) -> None:
    registry = home / "registry.db"
    registry.parent.mkdir(parents=True)
    registry.write_bytes(b"")

    assert main(["models", "list"]) == 0
    assert capsys.readouterr().out == "No model versions registered yet (environment local); run `mlops run`.\n"
    assert registry.read_bytes()[: len(SQLITE_HEADER)] == SQLITE_HEADER


def test_an_empty_registry_is_refused_where_the_home_is_unknown(tmp_path: Path) -> None:
    registry = tmp_path / "registry.db"
    registry.write_bytes(b"")
    with pytest.raises(RegistryFileError) as refused:
        ModelRegistry(f"sqlite:///{registry}", "local")  # e.g. a run launched from the UI: it cannot see the home
    assert str(refused.value) == (
        f"The model registry {registry} is empty (0 bytes); SQLite never leaves a registry it wrote empty, so it was "
        "truncated or replaced; opening it would start a new, empty registry, so it was left untouched. If this home "
        f"never held model versions, delete the empty file. Otherwise: {RESTORE}"
    )
    assert registry.stat().st_size == 0


def _open_and_register(url: str, index: int) -> int:
    with ModelRegistry(url, "local", home_history=[]) as models:
        return models.register(new_version(index), actor=f"process {index}").version.number


def test_processes_creating_one_new_registry_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    # Spawned, not forked: a child forked from this process (whose server fixtures run threads) once inherited a
    # held lock and hung the whole suite. Closed and joined, not terminated (what leaving `with Pool` does): its
    # workers then end on their own, whatever this process's SIGTERM handler was when they started.
    pool = multiprocessing.get_context("spawn").Pool(4)
    try:
        numbers = pool.starmap(_open_and_register, [(url, index) for index in range(1, 9)])
    finally:
        pool.close()
        pool.join()
    assert sorted(numbers) == list(range(1, 9))
    with sqlite3.connect(tmp_path / "registry.db") as connection:
        assert connection.execute("SELECT COUNT(*) FROM model_versions").fetchone() == (8,)
    connection.close()


def test_the_real_command_names_the_damaged_file_without_a_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    registry = _with_history(home)
    registry.write_bytes(b"garbage" * 10)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("DAGSTER_HOME", "BENTOML_HOME")}
    completed = subprocess.run(
        [MLOPS, "run", "--dataset", str(dataset)],
        env={**env, "MLOPS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == FAILED
    assert completed.stderr.splitlines() == [
        f"error: The model registry {registry} is not a SQLite database (70 bytes starting b'garbageg'); it cannot "
        f"be read and was left untouched. {RESTORE}"
    ]
    assert completed.stdout == ""
    assert not (home / "dagster" / "history").exists()


ELSEWHERE = "move it away or point the registry elsewhere (MLOPS_HOME, or the registry URL), then run again"


@pytest.mark.parametrize(
    ("layout", "command", "line"),
    [
        (
            "registry is a folder",
            ["run"],
            "error: {home}/registry.db: a directory, not the registry file; " + ELSEWHERE,
        ),
        (
            "home is a file",
            ["models", "list"],
            "error: {home}: not a folder, so the registry {home}/registry.db cannot be created in it; " + ELSEWHERE,
        ),
        (
            "dangling link",
            ["models", "list"],
            "error: {home}/registry.db: a symbolic link to {target}, which does not exist; no registry was created "
            "there. Point the link at the registry file or remove it, then run again",
        ),
    ],
)
def test_a_damaged_home_layout_is_one_error_line_and_creates_nothing_elsewhere(
    home: Path, capsys: pytest.CaptureFixture, layout: str, command: list[str], line: str
) -> None:
    target = home.parent / "elsewhere" / "x.db"
    if layout == "registry is a folder":
        (home / "registry.db").mkdir(parents=True)
    elif layout == "home is a file":
        home.write_text("")
    else:
        home.mkdir()
        (home / "registry.db").symlink_to(target)
    if command == ["run"]:
        (home.parent / "dataset").mkdir()
        command = ["run", "--dataset", str(home.parent / "dataset")]

    code = main(command)

    captured = capsys.readouterr()
    assert (code, captured.err.splitlines(), captured.out) == (
        BAD_SETTINGS,
        [line.format(home=home, target=target)],
        "",
    )
    assert not target.parent.exists()
