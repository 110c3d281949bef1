"""The recorded git state: a real commit and dirty flag in a checkout; "unknown" (never "clean") without git."""

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from mlops_assets.cli import main
from mlops_assets.lib.provenance import GitState, describe_commit, dirty_label, git_state
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets_tests.registry_helpers import new_version


def _git(repository: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args]
    return subprocess.run(command, cwd=repository, capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    repository = tmp_path / "checkout"
    repository.mkdir()
    _git(repository, "init", "--quiet")
    (repository / "train.py").write_text("epochs = 3\n")
    _git(repository, "add", "train.py")
    _git(repository, "commit", "--quiet", "-m", "first")
    return repository


def test_a_checkout_reports_its_commit_and_whether_tracked_files_changed(checkout: Path) -> None:
    head = _git(checkout, "rev-parse", "HEAD")
    (checkout / "untracked.txt").write_text("not part of the commit, not a change to it")
    assert git_state(checkout) == GitState(head, dirty=False)
    (checkout / "train.py").write_text("epochs = 4\n")
    assert git_state(checkout) == GitState(head, dirty=True)


def test_outside_a_checkout_the_commit_and_the_dirty_flag_are_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stop git's search for a repository at tmp_path, whatever encloses it.
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "plain").mkdir()
    assert git_state(tmp_path / "plain") == GitState("unknown", dirty=None)


def test_without_a_git_executable_the_commit_and_the_dirty_flag_are_unknown(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert git_state(checkout) == GitState("unknown", dirty=None)


def test_a_known_commit_whose_working_tree_cannot_be_read_has_an_unknown_dirty_flag(checkout: Path) -> None:
    head = _git(checkout, "rev-parse", "HEAD")
    (checkout / ".git" / "index").write_bytes(b"a corrupt index: `git status` fails, `git rev-parse` does not")
    assert git_state(checkout) == GitState(head, dirty=None)


def test_the_dirty_flag_reads_clean_dirty_or_unknown() -> None:
    assert [dirty_label(flag) for flag in (False, True, None)] == ["clean", "dirty", "unknown"]
    commit = "0123456789abcdef"
    assert describe_commit(commit, False) == "0123456789"
    assert describe_commit(commit, True) == "0123456789+dirty"
    assert describe_commit(commit, None) == "0123456789 (dirty: unknown)"
    assert describe_commit("unknown", None) == "unknown"


def test_models_list_and_show_print_an_unknown_git_state_as_unknown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path}/registry.db"
    monkeypatch.setenv("MLOPS_REGISTRY_URL", url)
    with ModelRegistry(url, "local") as models:
        models.register(dataclasses.replace(new_version(1), git_commit="unknown", git_dirty=None), actor="test")
        models.register(dataclasses.replace(new_version(2), git_commit="f" * 40, git_dirty=None), actor="test")
        models.register(dataclasses.replace(new_version(3), git_commit="e" * 40, git_dirty=False), actor="test")

    assert main(["models", "list"]) == 0
    header, _, *rows = capsys.readouterr().out.splitlines()
    column = re.split(r"\s{2,}", header).index("commit")
    assert [re.split(r"\s{2,}", row)[column] for row in rows] == [
        "unknown",
        "ffffffffff (dirty: unknown)",
        "eeeeeeeeee",
    ]

    for number, commit, working_tree in (("1", "unknown", "unknown"), ("3", "eeeeeeeeee", "clean")):
        assert main(["models", "show", number]) == 0
        fields = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in capsys.readouterr().out.splitlines()[:18])
        assert (fields["git commit"], fields["working tree"]) == (commit, working_tree)
