"""Named, versioned datasets through the `mlops` command line, on one home, in order: a run on dataset `a` is
remembered (rebuild uses `a`, not the sample), an old version trains by `a@1` after the folder changed, `gc` removes
only what no model version was trained on, and bad input is refused by name with nothing changed in the registry."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from PIL import Image

from mlops_assets.lib.data.content_store import LocalContentStore, file_digest
from mlops_assets.lib.data.manifest import scan_dataset
from mlops_assets_tests.cli_processes import FAST_CONFIG, brightness_dataset
from mlops_assets_tests.image_inputs import noise

pytestmark = pytest.mark.e2e
MLOPS = str(Path(sys.executable).parent / "mlops")


class Home:
    """A home of its own, driven through `mlops` processes."""

    def __init__(self, root: Path) -> None:
        self.root, self.home = root, root / "home"
        self.config = root / "fast.yaml"
        self.config.write_text(FAST_CONFIG)
        self.a = brightness_dataset(root / "a", seed=1)
        self.versions: dict[int, str] = {}  # a's version number -> data version, as the tests record them

    def mlops(self, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, "MLOPS_HOME": str(self.home)}
        for key in ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME", "MLOPS_ENV"):
            env.pop(key, None)
        return subprocess.run([MLOPS, *args], env=env, capture_output=True, text=True, timeout=900)

    def ok(self, *args: str) -> str:
        completed = self.mlops(*args)
        assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
        return completed.stdout

    def latest(self, asset: str) -> dict:
        with dg.DagsterInstance.from_config(str(self.home / "dagster")) as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey(asset))
        return {key: value.value for key, value in event.asset_materialization.metadata.items()}

    def registry_state(self) -> tuple[str, str]:
        """What the registry shows: the model versions and the catalogue (with the current dataset)."""
        return self.ok("models", "list"), self.ok("datasets", "list")


def _image(path: Path, seed: int, base: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(noise(seed, (8, 8), base, 25)).save(path)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return Home(tmp_path_factory.mktemp("datasets"))


def test_a_run_on_a_named_dataset_is_remembered_and_rebuild_uses_it(home: Home) -> None:
    assert home.ok("datasets", "add", "a", str(home.a)) == (
        f"Added dataset a: {home.a}. Train on it with `mlops run --dataset a`.\n"
    )
    version_1 = scan_dataset(home.a).data_version
    ran = home.ok("run", "--dataset", "a", "--config", str(home.config))
    assert f"  dataset:       a@1 ({home.a}): 36 images, 3 label folders, data version {version_1[:16]}\n" in ran
    raw = home.latest("raw_images")
    assert (raw["dataset"], raw["dataset_source"], raw["dataset_version"], raw["data_version"]) == (
        "a",
        str(home.a),
        "a@1",
        version_1,
    )
    assert (raw["blobs_added"], raw["pinned_version"]) == (36, False)
    home.versions[1] = version_1

    # Without --dataset, rebuild reads `a` (had it gone back to the sample, raw_images would be rebuilt).
    rebuilt = home.ok("rebuild", "--config", str(home.config))
    assert "raw_images" not in rebuilt
    assert home.latest("raw_images")["dataset_version"] == "a@1"
    assert "Current dataset (local): a (*)" in home.ok("datasets", "list")

    _image(home.a / "grey" / "extra.png", seed=500, base=128)
    version_2 = scan_dataset(home.a).data_version
    rebuilt = home.ok("rebuild", "--config", str(home.config))
    assert f"  raw_images: rebuilt (dataset content changed ({version_1[:12]} -> {version_2[:12]}))" in rebuilt
    raw = home.latest("raw_images")
    assert (raw["dataset_version"], raw["data_version"], raw["blobs_added"]) == ("a@2", version_2, 1)
    home.versions[2] = version_2
    shown = home.ok("models", "show", "2")
    assert f"dataset           a@2 ({home.a})\n" in shown


def test_an_old_version_trains_by_name_at_version_after_the_folder_changed(home: Home) -> None:
    # The folder moves on: a file rewritten in place, another deleted. Neither recorded version is in it any more.
    light = sorted((home.a / "light").glob("*.png"))
    _image(light[0], seed=900, base=230)
    light[1].unlink()
    assert scan_dataset(home.a).data_version not in home.versions.values()
    # Decoded again from the store, not reused from an earlier build of the same version.
    shutil.rmtree(home.home / "artifacts" / "validated_images")

    ran = home.ok("run", "--dataset", "a@1", "--config", str(home.config))
    assert f"  dataset:       a@1 ({home.a}): 36 images, 3 label folders, data version {home.versions[1][:16]}\n" in ran
    raw, validated = home.latest("raw_images"), home.latest("validated_images")
    assert (raw["data_version"], raw["pinned_version"], raw["dataset_chosen_by"]) == (
        home.versions[1],
        True,
        "the dataset chosen for the run",
    )
    assert (validated["num_decoded_now"], validated["num_images_kept"]) == (36, 36)
    # Version 1's data and hyper-parameters give version 1's model again.
    assert "  registry:      the same model is already version 1 (" in ran
    assert f"dataset           a@1 ({home.a})\n" in home.ok("models", "show", "1")
    assert "Current dataset (local): a@1 (*)" in home.ok("datasets", "list")


def _versions_table(text: str) -> list[tuple[str, str]]:
    """(version, files) of each row of `mlops datasets show`: files is 'kept' or 'collected'."""
    rows = [line.split() for line in text.splitlines() if line[:1].isdigit()]
    return [(row[0], "kept" if row[-1] == "kept" else row[-2]) for row in rows]


def _blob(home: Home, number: int, path: str) -> Path:
    """The stored file of `path` in version `number` of `a`."""
    store = LocalContentStore(home.home / "dataset-store", home.root / "unused")
    sha256 = next(entry.sha256 for entry in store.manifest(home.versions[number]).entries if entry.path == path)
    return store.blobs.path(sha256)


def test_gc_removes_only_files_no_model_version_was_trained_on(home: Home) -> None:
    # A version no model is trained on: one class only, so validation stops the run before training.
    for label in ("grey", "light"):
        for path in (home.a / label).glob("*.png"):
            path.unlink()
    _image(home.a / "dark" / "only-here.png", seed=901, base=40)
    failed = home.mlops("run", "--dataset", "a", "--config", str(home.config))
    assert failed.returncode == 1
    assert "check class_coverage on validated_images failed" in failed.stdout
    assert home.latest("raw_images")["dataset_version"] == "a@3"
    version_3 = scan_dataset(home.a).data_version
    only_in_3 = file_digest(home.a / "dark" / "only-here.png")
    blob = home.home / "dataset-store" / "blobs" / only_in_3[:2] / only_in_3
    assert blob.is_file()

    collected = home.ok("datasets", "gc")
    assert collected.startswith(f"Removed 1 file(s), {(home.a / 'dark' / 'only-here.png').stat().st_size} bytes, ")
    assert collected.endswith("Versions whose files were collected: a@3\n")
    assert not blob.exists()
    assert _blob(home, 2, "grey/extra.png").is_file()  # version 2 has a model: kept
    assert _versions_table(home.ok("datasets", "show", "a")) == [("1", "kept"), ("2", "kept"), ("3", "collected")]

    refused = home.mlops("run", "--dataset", "a@3", "--config", str(home.config))
    assert refused.returncode == 2
    assert refused.stderr.startswith(
        f"error: command line: --dataset = 'a@3': version 3 of dataset 'a' (data version {version_3[:12]}) was "
        "collected by `mlops datasets gc` on "
    )


def test_bad_input_is_named_and_changes_nothing_in_the_registry(home: Home) -> None:
    before = home.registry_state()
    unknown = home.mlops("run", "--dataset", "nope", "--config", str(home.config))
    assert (unknown.returncode, unknown.stdout, unknown.stderr) == (
        2,
        "",
        "error: command line: --dataset = 'nope': no dataset named 'nope' in the catalogue (known: sample, a) and "
        "no such folder; add it with `mlops datasets add nope SOURCE`, or pass a folder\n",
    )
    no_version = home.mlops("run", "--dataset", "a@9", "--config", str(home.config))
    assert (no_version.returncode, no_version.stderr) == (
        2,
        "error: command line: --dataset = 'a@9': '9' is not one of the recorded versions of dataset 'a' (1 to 3, "
        f"the latest 3 = data version {scan_dataset(home.a).data_version[:12]}); see `mlops datasets show a`.\n",
    )
    assert home.registry_state() == before

    vanished = brightness_dataset(home.root / "b", seed=2)
    home.ok("datasets", "add", "b", str(vanished))
    before = home.registry_state()
    shutil.rmtree(vanished)
    gone = home.mlops("run", "--dataset", "b", "--config", str(home.config))
    assert (gone.returncode, gone.stderr) == (
        2,
        f"error: dataset catalogue: dataset b: source = '{vanished}': no such folder; pass a folder laid out as "
        "<root>/<label>/<image file>\n",
    )

    # A file deleted from the store: named before any run exists.
    deleted = _blob(home, 2, "grey/extra.png")
    deleted.unlink()
    missing = home.mlops("run", "--dataset", "a@2", "--config", str(home.config))
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        f"error: Data version {home.versions[2][:16]} cannot be laid out: 1 of its 37 files are missing from the "
        f"dataset store ({home.home / 'dataset-store'}), e.g. grey/extra.png (SHA-256 {deleted.name[:12]})."
    )

    # A corrupt file (same size, other bytes): found when the run reads the version, before anything trains.
    victim = _blob(home, 1, "dark/00.png")
    victim.chmod(0o644)
    victim.write_bytes(bytes(victim.stat().st_size))
    corrupt = home.mlops("run", "--dataset", "a@1", "--config", str(home.config))
    assert corrupt.returncode == 1
    assert (
        f"Data version {home.versions[1][:16]} cannot be laid out: 1 of its files are corrupt in the dataset store "
        f"(dark/00.png: blob {victim} content hashes to {file_digest(victim)[:12]})."
    ) in corrupt.stdout
    assert home.registry_state() == before
