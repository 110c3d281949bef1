"""The content-addressed dataset store on a local disk: deduplicated copies, hard-linked version folders, and clear
errors for what is missing or corrupt."""

import errno
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest

from mlops_assets.lib.data import manifest_chunks
from mlops_assets.lib.data.content_store import LocalContentStore, StoreError, file_digest
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets.lib.errors import DatasetError
from mlops_assets_tests.conftest import write_png


def _dataset(root: Path) -> Path:
    rng = np.random.default_rng(7)
    for label in ("cat", "dog"):
        for index in range(3):
            write_png(root / label / f"{index}.png", rng.integers(0, 255, (8, 8)))
    shutil.copy(root / "cat" / "0.png", root / "dog" / "copy of cat 0.png")  # the same content twice
    (root / "empty").mkdir()
    (root / "cat" / "notes.txt").write_text("a side file")
    return root


@pytest.fixture
def store(tmp_path: Path) -> LocalContentStore:
    return LocalContentStore(tmp_path / "store", tmp_path / "versions")


def test_each_content_is_kept_once_and_a_new_image_adds_one_blob(store: LocalContentStore, tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    first = scan_dataset(root)
    kept = store.keep(first, root)
    sizes = {entry.sha256: entry.size for entry in first.entries}
    assert (kept.blobs_added, kept.bytes_added, kept.blobs_total, kept.manifest_added) == (
        6,
        sum(sizes.values()),
        6,
        True,
    )
    assert (len(first.entries), len(list(store.blobs.blobs()))) == (7, 6)
    assert store.keep(first, root) == type(kept)(first.data_version, 0, 0, 6, False)

    write_png(root / "dog" / "new.png", np.full((8, 8), 3))
    second = scan_dataset(root)
    added = store.keep(second, root)
    assert (added.blobs_added, added.bytes_added) == (1, (root / "dog" / "new.png").stat().st_size)
    assert len(list(store.blobs.blobs())) == 7


def test_blobs_are_read_only_copies_so_an_image_edited_in_place_leaves_the_recorded_version_intact(
    store: LocalContentStore, tmp_path: Path
) -> None:
    root = _dataset(tmp_path / "data")
    manifest = scan_dataset(root)
    store.keep(manifest, root)
    edited = root / "cat" / "1.png"
    original = file_digest(edited)
    blob = store.blobs.path(original)
    assert blob.stat().st_ino != edited.stat().st_ino
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    write_png(edited, np.zeros((8, 8)))  # rewritten in place, as an image editor or `cp` over it does

    folder = store.local_root(store.manifest(manifest.data_version), verify=True)
    assert file_digest(folder / "cat" / "1.png") == original
    assert scan_dataset(folder).data_version == manifest.data_version
    # Hard links to the blobs (no bytes copied), and the empty label folder is there too.
    assert (folder / "cat" / "1.png").stat().st_ino == blob.stat().st_ino
    assert (folder / "empty").is_dir() and not (folder / "cat" / "notes.txt").exists()


def test_a_version_folder_is_copied_where_the_file_system_refuses_hard_links(
    store: LocalContentStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _dataset(tmp_path / "data")
    manifest = scan_dataset(root)
    store.keep(manifest, root)

    def cross_device(source, destination):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    folder = store.local_root(manifest)
    entry = manifest.entries[0]
    assert (folder / entry.path).stat().st_ino != store.blobs.path(entry.sha256).stat().st_ino
    assert file_digest(folder / entry.path) == entry.sha256


def test_a_file_changed_after_the_scan_is_refused_and_the_version_is_not_kept(
    store: LocalContentStore, tmp_path: Path
) -> None:
    root = _dataset(tmp_path / "data")
    manifest = scan_dataset(root)
    changed = root / "dog" / "2.png"
    scanned = next(entry.sha256 for entry in manifest.entries if entry.path == "dog/2.png")
    write_png(changed, np.ones((8, 8)))
    with pytest.raises(DatasetError) as refused:
        store.keep(manifest, root)
    assert str(refused.value) == (
        f"{changed} changed since the dataset was scanned (its SHA-256 is now {file_digest(changed)[:12]}, not "
        f"{scanned[:12]}); run again once the folder is no longer being written."
    )
    assert not store.has_manifest(manifest.data_version)
    assert not store.blobs.has(scanned)


def test_a_missing_blob_is_named_with_its_file(store: LocalContentStore, tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    manifest = scan_dataset(root)
    store.keep(manifest, root)
    gone = next(entry for entry in manifest.entries if entry.path == "dog/1.png")
    store.blobs.remove(gone.sha256)
    assert store.missing(manifest) == [gone]
    with pytest.raises(StoreError) as refused:
        store.local_root(manifest)
    assert str(refused.value) == (
        f"Data version {manifest.data_version[:16]} cannot be laid out: 1 of its 7 files are missing from the "
        f"dataset store ({store.blobs.root}), e.g. dog/1.png (SHA-256 {gone.sha256[:12]}). They were deleted (or "
        "collected by `mlops datasets gc`); train on another version, or record this one again from a source that "
        "still holds these files."
    )


def test_a_corrupt_blob_is_found_when_a_version_is_verified(store: LocalContentStore, tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    manifest = scan_dataset(root)
    store.keep(manifest, root)
    victim = next(entry for entry in manifest.entries if entry.path == "cat/2.png")
    blob = store.blobs.path(victim.sha256)
    blob.chmod(0o644)
    blob.write_bytes(bytes(victim.size))  # same size, other bytes
    with pytest.raises(StoreError) as refused:
        store.local_root(manifest, verify=True)
    message = str(refused.value)
    assert message.startswith(
        f"Data version {manifest.data_version[:16]} cannot be laid out: 1 of its files are corrupt in the dataset "
        f"store (cat/2.png: blob {blob} content hashes to {file_digest(blob)[:12]})."
    )
    assert not (tmp_path / "versions" / manifest.data_version).exists()


def test_the_manifest_is_kept_whole_and_a_damaged_one_is_refused(store: LocalContentStore, tmp_path: Path) -> None:
    root = _dataset(tmp_path / "data")
    manifest = scan_dataset(root)
    store.keep(manifest, root)
    assert store.manifest(manifest.data_version) == manifest
    with pytest.raises(StoreError) as unknown:
        store.manifest("0" * 64)
    assert str(unknown.value) == (
        f"Data version 0000000000000000 is not in the dataset store ({store.root}): no run recorded it here. "
        "Record it by running on its source."
    )
    # Chunks are named by their content: a damaged one is found, and so is one gone.
    chunks = sorted(store.manifest_path(manifest.data_version).parent.glob("chunks/*.json.gz"))
    assert len(chunks) == 1
    damaged_bytes = bytearray(chunks[0].read_bytes())
    damaged_bytes[12] ^= 0xFF
    chunks[0].write_bytes(bytes(damaged_bytes))
    with pytest.raises(StoreError) as damaged:
        store.manifest(manifest.data_version)
    assert str(damaged.value) == (
        f"The stored manifest of data version {manifest.data_version[:16]} is corrupt (chunk {chunks[0].name[:12]} "
        f"does not hash to its name) in the dataset store ({store.root}). Restore the store from a backup, or record "
        "the version again from its source."
    )
    chunks[0].unlink()
    with pytest.raises(StoreError) as incomplete:
        store.manifest(manifest.data_version)
    assert str(incomplete.value) == (
        f"The stored manifest of data version {manifest.data_version[:16]} is incomplete (chunk {chunks[0].name[:12]} "
        f"is missing) in the dataset store ({store.root}). Restore the store from a backup, or record the version "
        "again from its source."
    )


def test_collection_keeps_the_files_of_the_versions_to_keep_and_removes_the_rest(
    store: LocalContentStore, tmp_path: Path
) -> None:
    root = _dataset(tmp_path / "data")
    first = scan_dataset(root)
    store.keep(first, root)
    store.local_root(first)  # a laid-out folder, removed by the collection (it holds links)
    (root / "cat" / "2.png").unlink()
    write_png(root / "cat" / "9.png", np.full((8, 8), 9))
    second = scan_dataset(root)
    store.keep(second, root)
    only_first = {entry.sha256 for entry in first.entries} - {entry.sha256 for entry in second.entries}
    removed_bytes = sum(store.blobs.path(sha256).stat().st_size for sha256 in only_first)

    collected = store.collect({second.data_version, "f" * 64})
    assert (collected.blobs_removed, collected.bytes_removed, collected.blobs_kept) == (1, removed_bytes, 6)
    assert collected.versions_kept == (second.data_version,)
    assert store.missing(second) == []
    assert [entry.path for entry in store.missing(first)] == ["cat/2.png"]
    assert list((tmp_path / "versions").iterdir()) == []


def test_a_stored_manifest_comes_back_in_scan_order_and_an_added_file_changes_one_chunk(tmp_path: Path) -> None:
    root = tmp_path / "data"
    rng = np.random.default_rng(3)
    for relative in ("b/z.png", "b/a/deep/1.png", "b/a/0.png", "b/0.png", "a/x y.png", "a/é.png", "a/sub/9.png"):
        write_png(root / relative, rng.integers(0, 255, (4, 4)))
    for index in range(600):  # enough entries for several chunks
        write_png(root / "c" / f"{index:04d}.png", rng.integers(0, 255, (4, 4)))
    (root / "b" / ".hidden").mkdir()
    (root / "b" / "Thumbs.db").write_text("side file")
    manifest = scan_dataset(root)
    tree, chunks = manifest_chunks.encode(manifest)
    assert manifest_chunks.chunk_count(len(manifest.entries)) == 4 == len(chunks)
    decoded = manifest_chunks.decode(tree, chunks.__getitem__)
    assert decoded == manifest  # entries in the same order (the arrays follow it), skipped entries, label folders
    assert [entry.path for entry in decoded.entries[:9]] == [
        "a/x y.png",
        "a/é.png",
        "a/sub/9.png",
        "b/0.png",
        "b/z.png",
        "b/a/0.png",
        "b/a/deep/1.png",
        "c/0000.png",
        "c/0001.png",
    ]

    write_png(root / "c" / "new.png", np.zeros((4, 4)))
    _, after = manifest_chunks.encode(scan_dataset(root))
    assert len(set(after) - set(chunks)) == 1
