"""A long-lived process (a webserver, a daemon, a test session) keeps a registry open while other processes write to
it, and opens it again in between: it reads what they wrote, and its opening checks find the file whole.

SQLite's locks are POSIX advisory locks, which a process loses on a file as soon as it closes any descriptor of that
file. A registry opened while another one is open in the same process must therefore never read the file outside
SQLite: the other processes would take the open registry for gone, and the last of them to close would delete the
write-ahead log and its shared-memory index from under it (the open registry then reads the file as malformed).
"""

import multiprocessing
from pathlib import Path

from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets_tests.registry_helpers import registered


def _register(url: str, index: int) -> int:
    with ModelRegistry(url, "local") as models:
        return registered(models, index)


def test_a_registry_kept_open_reads_what_other_processes_wrote_after_it_was_opened_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    with ModelRegistry(url, "local") as models:
        registered(models, 1)

    with ModelRegistry(url, "local") as kept:  # e.g. a webserver's registry, open for as long as it serves
        assert kept.state_summary() == {"candidate": [1]}  # its pooled connection stays open on the file
        ModelRegistry(url, "local").close()  # opened again in this process: the file is checked
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            written = pool.starmap(_register, [(url, 2), (url, 3)])

        assert sorted(written) == [2, 3]
        assert kept.state_summary() == {"candidate": [1, 2, 3]}
        with ModelRegistry(url, "local") as again:  # checked whole, and sees the same
            assert [(entry.version, entry.action) for entry in again.history()] == [
                (1, "register"),
                (2, "register"),
                (3, "register"),
            ]
