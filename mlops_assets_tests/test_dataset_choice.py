"""Which dataset a run reads: `--dataset` text, raw_images' config, the current dataset, the operator's folder and the
sample, in that order; and the launchpad's enumeration of the catalogue."""

from pathlib import Path

import dagster as dg
import pytest
from dagster_gcp import GCSResource

from mlops_assets.dataset_choice import DatasetChoice, parse_choice, resolve, sample_folder
from mlops_assets.dataset_runs import with_choice
from mlops_assets.lib.registry.datasets import CatalogError
from mlops_assets.lib.registry.registry import ModelRegistry
from mlops_assets.lib.settings_validation import ConfigError
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets.resources.gcs_dataset import GcsDatasetSource


@pytest.fixture
def models(tmp_path: Path):
    with ModelRegistry(f"sqlite:///{tmp_path}/registry.db", "local") as registry:
        registry.datasets.add("flowers", "/data/flowers", actor="test")
        yield registry


def test_dataset_text_is_a_name_a_version_or_a_path(models: ModelRegistry, tmp_path: Path) -> None:
    catalog = models.datasets
    (tmp_path / "flowers").mkdir()
    (tmp_path / "local").mkdir()
    assert parse_choice("flowers", catalog) == DatasetChoice(name="flowers")  # the name wins over a folder
    assert parse_choice("flowers@3", catalog) == DatasetChoice(name="flowers", version="3")
    assert parse_choice("sample", catalog) == DatasetChoice(name="sample")
    assert parse_choice(str(tmp_path / "local"), catalog) == DatasetChoice(path=str(tmp_path / "local"))
    assert parse_choice("gs://bucket/flowers@2", catalog) == DatasetChoice(path="gs://bucket/flowers@2")
    assert parse_choice("no/such/folder", catalog) == DatasetChoice(path=str(Path("no/such/folder").resolve()))
    with pytest.raises(ConfigError) as unknown:
        parse_choice("tulips@2", catalog)
    assert str(unknown.value) == (
        "command line: --dataset = 'tulips@2': no dataset named 'tulips' in the catalogue (known: sample, flowers) "
        "and no such folder; add it with `mlops datasets add tulips SOURCE`, or pass a folder"
    )


def test_the_order_path_then_name_then_current_then_operator_folder_then_sample(models: ModelRegistry) -> None:
    catalog = models.datasets
    operator = FolderDatasetSource(root="/operator")
    assert resolve(DatasetChoice(path="/quick"), catalog, operator).source == "/quick"
    assert resolve(DatasetChoice(name="flowers"), catalog, operator).source == "/data/flowers"
    # Nothing chosen yet: the operator's folder, else the sample.
    assert resolve(DatasetChoice(), catalog, operator).source == "/operator"
    nothing = resolve(DatasetChoice(), catalog, FolderDatasetSource())
    assert (nothing.name, nothing.source, nothing.chosen_by) == (
        "sample",
        str(sample_folder()),
        "the default (no dataset chosen yet)",
    )
    # Once a dataset was chosen, it is current: the operator's folder no longer applies.
    catalog.set_current("test", name="flowers")
    current = resolve(DatasetChoice(), catalog, operator)
    assert (current.name, current.source, current.chosen_by) == (
        "flowers",
        "/data/flowers",
        "the project's current dataset",
    )
    catalog.set_current("test", path="/scratch")
    assert resolve(DatasetChoice(), catalog, operator).source == "/scratch"


def test_a_pinned_version_is_resolved_from_the_catalogue_and_a_collected_one_is_refused(
    models: ModelRegistry,
) -> None:
    catalog = models.datasets
    catalog.record_version("flowers", "/data/flowers-then", "ab" * 32, 3, {"a": 3}, 30, "run-1")
    pinned = resolve(DatasetChoice(name="flowers", version="1"), catalog, FolderDatasetSource())
    assert (pinned.pinned.data_version, pinned.source, str(pinned)) == (
        "ab" * 32,
        "/data/flowers-then",
        f"flowers@1 (data version {'ab' * 6}, from the dataset store)",
    )
    catalog.mark_collected(set())
    with pytest.raises(CatalogError) as collected:
        resolve(DatasetChoice(name="flowers", version="1"), catalog, FolderDatasetSource())
    assert str(collected.value).startswith(
        f"version 1 of dataset 'flowers' (data version {'ab' * 6}) was collected by `mlops datasets gc` on "
    )
    with pytest.raises(CatalogError) as both:
        resolve(DatasetChoice(name="flowers", path="/quick"), catalog, FolderDatasetSource())
    assert str(both.value) == (
        "both a path (/quick) and a dataset ('flowers') are chosen: leave `dataset` at 'current' to read the path, "
        "or empty `path` to read the dataset"
    )
    with pytest.raises(CatalogError) as path_version:
        resolve(DatasetChoice(path="/quick", version="2"), catalog, FolderDatasetSource())
    assert str(path_version.value) == (
        "version '2' with the path /quick: only catalogue datasets have recorded versions; `mlops datasets add NAME "
        "/quick` names it"
    )


def test_the_sample_is_refused_where_datasets_are_read_from_gcs(models: ModelRegistry) -> None:
    with pytest.raises(CatalogError) as refused:
        resolve(DatasetChoice(name="sample"), models.datasets, GcsDatasetSource(gcs=GCSResource(project="test")))
    assert str(refused.value) == (
        "the bundled sample is a local folder, and this environment reads datasets from GCS "
        "(storage.dataset_source: gcs): choose a dataset whose source is gs://bucket/prefix"
    )


def test_dataset_text_and_run_config_may_not_choose_two_datasets() -> None:
    given = {"ops": {"raw_images": {"config": {"dataset": "flowers"}}, "trained_model": {"config": {"epochs": 2}}}}
    same = with_choice(given, DatasetChoice(name="flowers"))  # the same choice twice is one choice
    assert same["ops"]["raw_images"] == {"config": {"dataset": "flowers", "version": "", "path": ""}}
    merged = with_choice({"ops": {"trained_model": {"config": {"epochs": 2}}}}, DatasetChoice(path="/quick"))
    assert merged == {
        "ops": {
            "trained_model": {"config": {"epochs": 2}},
            "raw_images": {"config": {"dataset": "current", "version": "", "path": "/quick"}},
        }
    }
    with pytest.raises(ConfigError) as both:
        with_choice(given, DatasetChoice(name="tulips"))
    assert str(both.value) == (
        "command line: --dataset = 'tulips': the run config chooses a dataset too (ops.raw_images.config: flowers); "
        "keep one"
    )


def test_the_launchpad_offers_the_catalogue_as_an_enumeration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlops_assets.definitions import build_definitions
    from mlops_assets.defs.jobs import PIPELINE_JOB_NAME

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.delenv("MLOPS_REGISTRY_URL", raising=False)
    with ModelRegistry(f"sqlite:///{tmp_path}/registry.db", "local") as registry:
        registry.datasets.add("flowers", "/data/flowers", actor="test")
        registry.datasets.record_version("flowers", "/data/flowers", "ab" * 32, 1797, {"a": 1797}, 9, "run-1")
        registry.datasets.set_current("test", name="flowers")
    job = build_definitions("local").resolve_job_def(PIPELINE_JOB_NAME)
    field = job.run_config_schema.config_type.fields["ops"].config_type.fields["raw_images"]
    dataset = field.config_type.fields["config"].config_type.fields["dataset"]
    assert [value.config_value for value in dataset.config_type.enum_values] == ["current", "sample", "flowers"]
    assert dataset.description == (
        "Which dataset to read. 'current': the project's current dataset, set by `mlops run --dataset NAME` (now "
        "flowers). The catalogue: sample: bundled sample digits, no version recorded yet; flowers: /data/flowers, "
        f"latest version 1 (data version {'ab' * 6}, 1,797 images, 1 classes). Reload the code location to see "
        "datasets added since it loaded."
    )
    with pytest.raises(dg.DagsterInvalidConfigError) as unknown:
        dg.validate_run_config(job, {"ops": {"raw_images": {"config": {"dataset": "tulips"}}}})
    assert "Value at path root:ops:raw_images:config:dataset not in enum type" in str(unknown.value)


def test_an_unreadable_catalogue_leaves_the_launchpad_free_text_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mlops_assets.definitions import launchable_raw_images
    from mlops_assets.defs.ingest.assets import RawImagesConfig

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.delenv("MLOPS_REGISTRY_URL", raising=False)
    (tmp_path / "registry.db").write_bytes(b"not a database at all, but long enough to be read as one")
    with caplog.at_level("WARNING", logger="mlops_assets.dataset_runs"):
        asset = launchable_raw_images()
    dataset = asset.op.config_schema.config_type.fields["dataset"].config_type
    assert dataset.inner_type.key == "StringSourceType"  # free text, not an enumeration
    assert RawImagesConfig.model_fields["dataset"].default == "current"
    assert caplog.messages == [
        "The dataset catalogue could not be read ((sqlite3.DatabaseError) file is not a database): the launchpad "
        "takes any dataset name, checked when the run starts."
    ]
