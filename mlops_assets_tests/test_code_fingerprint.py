from pathlib import Path

import pytest

from mlops_assets.lib.code_fingerprint import derived_version, fingerprint, python_source_hash
from mlops_assets.lib.data.expectation_profiles import ProfileError, load_profile

SOURCE = '''
"""Module docstring."""

def train(x):
    """Train it."""
    # a comment
    return x * 2
'''


def test_docstrings_comments_and_formatting_do_not_change_the_hash() -> None:
    edited = (
        SOURCE.replace("Train it.", "Train it, carefully.")
        .replace("# a comment", "# another")
        .replace("return x * 2", "return   x*2")
    )
    assert python_source_hash(edited) == python_source_hash(SOURCE)


def test_any_change_to_behaviour_changes_the_hash() -> None:
    assert python_source_hash(SOURCE.replace("x * 2", "x * 3")) != python_source_hash(SOURCE)


def test_fingerprint_lists_its_inputs_and_follows_config(tmp_path: Path) -> None:
    bentofile = tmp_path / "bentofile.yaml"
    bentofile.write_text("name: x  # comment\n")
    first = fingerprint(["mlops_assets.lib.models.metrics"], {"bentofile": bentofile}, {"epochs": 20})
    assert set(first.inputs) == {"mlops_assets.lib.models.metrics", "bentofile", "config"}
    bentofile.write_text("name: x  # another comment\n")
    assert fingerprint(["mlops_assets.lib.models.metrics"], {"bentofile": bentofile}, {"epochs": 20}) == first
    assert (
        fingerprint(["mlops_assets.lib.models.metrics"], {"bentofile": bentofile}, {"epochs": 5}).version
        != first.version
    )


def test_a_broken_yaml_file_is_versioned_by_its_bytes_and_its_reader_names_where_it_is_broken(tmp_path: Path) -> None:
    # An edited expectation profile with a YAML mistake: the code location still loads (the versions of every asset
    # are computed then), its version follows each edit, and the run that uses it is told what to fix.
    profile = tmp_path / "mine.yaml"
    profile.write_text("quarantine:\n  min_contrast: [0.1\n")
    broken = fingerprint([], {"expectations/mine.yaml": profile})
    # Another size: versions are cached by a file's size and modification time.
    profile.write_text("quarantine:\n  min_contrast: [0.25\n")
    assert fingerprint([], {"expectations/mine.yaml": profile}) != broken
    with pytest.raises(ProfileError) as refused:
        load_profile(str(profile))
    assert str(refused.value).startswith(f"{profile}: not valid YAML (line 3, column 1: ")


@pytest.mark.parametrize(
    "content",
    [
        b"reviewed: 2024-01-01\n",  # a date: YAML has it, JSON does not
        b"blob: !!binary aGVsbG8=\n",
        b"1: a\nb: 2\n",  # keys of two types cannot be sorted
        b"note: caf\xe9\n",  # Latin-1, not UTF-8
        b"a: [1\n",  # does not parse
    ],
)
def test_any_yaml_file_gets_a_version_that_follows_its_bytes_where_its_meaning_cannot_be_written(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "profile.yaml"
    path.write_bytes(content)
    first = fingerprint([], {"profile": path})
    path.write_bytes(content + b"# more\n")
    assert fingerprint([], {"profile": path}) != first


def test_a_yaml_edit_that_changes_the_meaning_for_either_reading_changes_the_version(tmp_path: Path) -> None:
    # `on` is true to YAML 1.1 (BentoML reading a bentofile) and the text "on" to this project's YAML 1.2 reading.
    path = tmp_path / "settings.yaml"
    versions = []
    # Each text of its own length: versions are cached by a file's size and modification time, which two writes in
    # quick succession can share.
    for text in ("flag: on\n", "flag: 'on'\n", "flag:  true\n", "flag: true  # comment\n"):
        path.write_text(text)
        versions.append(fingerprint([], {"settings": path}).version)
    assert len(set(versions[:3])) == 3
    assert versions[3] == versions[2]


def test_derived_versions_are_stable_and_input_sensitive() -> None:
    # Pinned: every stored artifact is keyed by these versions, so a change to the derivation (or any randomness
    # in it, such as set or hash ordering) would silently invalidate every cache.
    assert derived_version("a", "code", {"k": 1}) == "f24fec37a4650ac4a2b8575f"
    # Config is compared by content, not by the order its keys were written in.
    assert derived_version("a", "code", {"k": 1, "j": [1, 2]}) == derived_version("a", "code", {"j": [1, 2], "k": 1})
    assert derived_version("a", "code", {"k": 1}) != derived_version("b", "code", {"k": 1})
    assert derived_version("a", "code", {"k": 1}) != derived_version("a", "code", {"k": 2})
