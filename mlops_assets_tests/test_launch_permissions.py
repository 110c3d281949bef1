"""Who can run what: launching runs picks built-in or installed plug-ins, the dataset and hyper-parameters; it cannot
import code (unless the operator allows import paths) nor move the artifact store, the IO manager or the registry."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.definitions import build_definitions
from mlops_assets.defs.ingest.assets import raw_images
from mlops_assets.defs.jobs import PIPELINE_JOB_NAME
from mlops_assets.defs.training.assets import trained_model
from mlops_assets.defs.validation.assets import validated_images
from mlops_assets.lib.data.sample_data import export_digits
from mlops_assets.lib.errors import PluginError
from mlops_assets.lib.models.model_package import load_package
from mlops_assets.lib.models.plugins import (
    ALLOW_IMPORT_PATHS_ENV,
    available_plugins,
    import_paths_allowed,
    resolve_plugin,
)
from mlops_assets.resources.artifacts import LocalArtifactStore
from mlops_assets.resources.dataset import FolderDatasetSource
from mlops_assets_tests.dataset_resources import dataset_store_under, registry_under
from mlops_assets_tests.plugin_fixtures import MarkerModule, install_entry_point, write_marker_module

MLOPS = str(Path(sys.executable).parent / "mlops")


def refusal(name: str, available: str = "['cnn', 'softmax']") -> str:
    return (
        f"Model plug-in {name!r} is an import path, and import paths are not allowed here (nothing was imported). "
        f"Use one of {available} or install the plug-in under the 'mlops_assets.model_plugins' entry points; an "
        "operator can allow import paths with MLOPS_ALLOW_PLUGIN_IMPORT_PATHS=1 in the environment of the code "
        "location (and of the model server)."
    )


def plugin_field(job: dg.JobDefinition):
    """The launchpad's `ops.trained_model.config.plugin` field."""
    ops = job.run_config_schema.config_type.fields["ops"].config_type
    return ops.fields["trained_model"].config_type.fields["config"].config_type.fields["plugin"]


def training_config(plugin: str) -> dict:
    return {"ops": {"trained_model": {"config": {"plugin": plugin, "epochs": 1}}}}


def assert_never_imported(module: MarkerModule) -> None:
    assert not module.marker.exists()
    assert module.module not in sys.modules


@pytest.fixture
def marker_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MarkerModule:
    """An importable plug-in module outside the allowed set, with import paths off (the default)."""
    monkeypatch.delenv(ALLOW_IMPORT_PATHS_ENV, raising=False)
    module = write_marker_module(tmp_path / "plugins")
    monkeypatch.syspath_prepend(str(module.directory))
    return module


@pytest.fixture(scope="module")
def code_location() -> dg.Definitions:
    """The code location's definitions as an operator runs them (import paths off)."""
    return build_definitions()


@pytest.fixture(scope="module")
def validated_instance(tmp_path_factory: pytest.TempPathFactory):
    """A Dagster instance holding raw_images and validated_images of a small digits set, built by the code location."""
    dataset = export_digits(tmp_path_factory.mktemp("data") / "digits20", per_class_limit=20)
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("instance"))) as instance:
        job = build_definitions().resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            # The dataset folder is the one resource a launch may choose.
            run_config={"resources": {"dataset": {"config": {"root": str(dataset)}}}},
            instance=instance,
            asset_selection=[dg.AssetKey("raw_images"), dg.AssetKey("validated_images")],
        )
        assert result.success
        assert result.output_for_node("raw_images").root == str(dataset)
        yield instance, dataset


def test_an_import_path_is_refused_without_importing_it(marker_module: MarkerModule) -> None:
    with pytest.raises(PluginError) as refused:
        resolve_plugin(marker_module.import_path)
    assert str(refused.value) == refusal(marker_module.import_path)
    assert_never_imported(marker_module)
    # The built-ins' own targets are not import paths from outside the set.
    assert resolve_plugin("mlops_assets.lib.models.plugins.softmax:SoftmaxRegressionPlugin").name == "softmax"


def test_the_operator_setting_allows_import_paths_and_frees_the_launchpad_field(
    marker_module: MarkerModule, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ALLOW_IMPORT_PATHS_ENV, "1")
    plugin = resolve_plugin(marker_module.import_path)
    assert (plugin.__module__, plugin.__name__, plugin.name) == (
        marker_module.module,
        "MarkerPlugin",
        marker_module.import_path,
    )
    assert marker_module.marker.read_text() == "imported"

    job = build_definitions().resolve_job_def(PIPELINE_JOB_NAME)
    # Free text (Dagster's string type, optional like every field with a default), no longer an enumeration.
    assert plugin_field(job).config_type.inner_type.key == "StringSourceType"
    validated = dg.validate_run_config(job, training_config(marker_module.import_path))
    assert validated["ops"]["trained_model"]["config"]["plugin"] == marker_module.import_path


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_an_unreadable_operator_setting_stops_the_definitions_from_loading(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(ALLOW_IMPORT_PATHS_ENV, value)
    expected = (
        f"MLOPS_ALLOW_PLUGIN_IMPORT_PATHS={value!r} is neither yes nor no; set it to 1 to allow `module:Class` model "
        "plug-ins, or to 0 (or leave it unset) to allow only the built-in and installed ones."
    )
    with pytest.raises(PluginError) as refused:
        import_paths_allowed()
    assert str(refused.value) == expected
    with pytest.raises(PluginError) as at_load:
        build_definitions()
    assert str(at_load.value) == expected


def test_launching_with_an_import_path_is_a_config_error_and_imports_nothing(marker_module: MarkerModule) -> None:
    job = build_definitions().resolve_job_def(PIPELINE_JOB_NAME)
    field = plugin_field(job)
    # The launchpad offers the allowed plug-ins as an enumeration, the default first.
    assert [value.config_value for value in field.config_type.enum_values] == ["cnn", "softmax"]
    assert field.default_value == "cnn"
    with dg.instance_for_test() as instance:
        with pytest.raises(dg.DagsterInvalidConfigError) as refused:
            job.execute_in_process(run_config=training_config(marker_module.import_path), instance=instance)
        assert instance.get_runs() == []
    assert [error.message for error in refused.value.errors] == [
        "Value at path root:ops:trained_model:config:plugin not in enum type Literal['cnn', 'softmax'] got "
        f"{marker_module.import_path}"
    ]
    assert_never_imported(marker_module)


def test_an_import_path_reaching_training_fails_the_step_without_importing_it(
    validated_instance, marker_module: MarkerModule, tmp_path: Path
) -> None:
    # The asset with a free-text `plugin` (as code that binds its own resources uses it): resolve_plugin still refuses.
    instance, dataset = validated_instance
    artifacts = tmp_path / "artifacts"
    result = dg.materialize(
        [raw_images, validated_images, trained_model],
        selection=[trained_model],
        instance=instance,
        resources={
            "dataset": FolderDatasetSource(root=str(dataset)),
            "artifacts": LocalArtifactStore(root=str(artifacts)),
            "dataset_store": dataset_store_under(artifacts),
            "registry": registry_under(artifacts),
        },
        run_config=training_config(marker_module.import_path),
        raise_on_error=False,
    )
    assert not result.success
    failures = [event for event in result.all_events if event.is_step_failure]
    assert [event.step_key for event in failures] == ["trained_model"]
    cause = failures[0].step_failure_data.error.cause
    assert (cause.cls_name, cause.message) == (
        "PluginError",
        f"mlops_assets.lib.errors.PluginError: {refusal(marker_module.import_path)}\n",
    )
    assert not artifacts.exists()
    assert_never_imported(marker_module)


def test_an_entry_point_plugin_trains_from_the_launchpad_with_import_paths_off(
    validated_instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ALLOW_IMPORT_PATHS_ENV, raising=False)
    site = tmp_path / "site"
    module = write_marker_module(site, plugin_name="marker")
    install_entry_point(site, "marker", module.import_path)
    monkeypatch.syspath_prepend(str(site))
    assert available_plugins()["marker"] == module.import_path
    assert_never_imported(module)  # listing entry points imports nothing

    job = build_definitions().resolve_implicit_global_asset_job_def()
    assert [value.config_value for value in plugin_field(job).config_type.enum_values] == ["cnn", "marker", "softmax"]
    instance, _ = validated_instance
    result = job.execute_in_process(
        run_config=training_config("marker"), instance=instance, asset_selection=[dg.AssetKey("trained_model")]
    )
    assert result.success
    model = result.output_for_node("trained_model")
    assert (model.plugin, len(model.history)) == ("marker", 1)
    loaded = load_package(Path(model.directory), device="cpu")
    assert (type(loaded.plugin).__module__, type(loaded.plugin).__name__) == (module.module, "MarkerPlugin")
    assert module.marker.read_text() == "imported"


@pytest.mark.parametrize(
    ("resource", "field"),
    [("artifacts", "root"), ("io_manager", "base_dir"), ("registry", "url"), ("registry", "policy_file")],
)
def test_run_config_cannot_move_the_artifact_store_the_io_manager_or_the_registry(
    code_location: dg.Definitions, tmp_path: Path, resource: str, field: str
) -> None:
    elsewhere = tmp_path / "elsewhere"
    value = f"sqlite:///{elsewhere}/registry.db" if field == "url" else str(elsewhere)
    run_config = {"resources": {resource: {"config": {field: value}}}}
    defs = code_location
    expected = (
        f'Received unexpected config entry "{field}" at path root:resources:{resource}:config. Expected: "{{ }}".'
    )
    # Every job of the code location, the UI's "Materialize" (the implicit asset job) included.
    jobs = [defs.resolve_job_def(job.name) for job in defs.jobs]
    jobs.append(defs.resolve_implicit_global_asset_job_def())
    for job in jobs:
        with pytest.raises(dg.DagsterInvalidConfigError) as refused:
            dg.validate_run_config(job, run_config)
        # (The registry jobs also miss their required op config; that is their own error.)
        assert [error.message for error in refused.value.errors if "resources" in error.message] == [expected], job.name
    with dg.instance_for_test() as instance:
        with pytest.raises(dg.DagsterInvalidConfigError):
            defs.resolve_job_def(PIPELINE_JOB_NAME).execute_in_process(run_config=run_config, instance=instance)
        assert instance.get_runs() == []
    assert not elsewhere.exists()


LAUNCH_MUTATION = """
mutation Launch($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message }
  }
}
"""
SCHEMA_QUERY = """
query Schema($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) {
    __typename
    ... on RunConfigSchema { allConfigTypes { __typename key ... on EnumConfigType { values { value } } } }
  }
}
"""


@pytest.mark.e2e
def test_the_launchpad_offers_only_allowed_plugins_and_refuses_paths_and_moved_storage(
    marker_module: MarkerModule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the UI's launchpad does: the webserver checks run config against the code server's job, then launches."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    from mlops_assets.code_location import LOCATION_NAME, workspace_file
    from mlops_assets.settings import PROJECT_ROOT

    # The code server could import the plug-in module if anything asked it to.
    monkeypatch.setenv("PYTHONPATH", str(marker_module.directory))
    monkeypatch.chdir(PROJECT_ROOT)  # as `mlops dev`: the workspace's working directory is "."
    selector = {"repositoryLocationName": LOCATION_NAME, "repositoryName": "__repository__"}
    job_selector = {**selector, "pipelineName": PIPELINE_JOB_NAME}
    launches = {
        "plugin": training_config(marker_module.import_path),
        "artifacts": {"resources": {"artifacts": {"config": {"root": str(tmp_path / "elsewhere")}}}},
        "io_manager": {"resources": {"io_manager": {"config": {"base_dir": str(tmp_path / "elsewhere")}}}},
    }
    with (
        dg.instance_for_test() as instance,
        WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(workspace_file())])) as process_context,
    ):
        context = process_context.create_request_context()
        assert context.get_code_location_error(LOCATION_NAME) is None
        schema = execute_dagster_graphql(context, SCHEMA_QUERY, variables={"selector": job_selector})
        answers = {
            name: execute_dagster_graphql(
                context,
                LAUNCH_MUTATION,
                variables={"executionParams": {"selector": job_selector, "runConfigData": run_config}},
            )
            for name, run_config in launches.items()
        }
        runs = instance.get_runs()
    assert schema.errors is None, schema.errors
    enums = [
        [value["value"] for value in config_type["values"]]
        for config_type in schema.data["runConfigSchemaOrError"]["allConfigTypes"]
        if config_type["__typename"] == "EnumConfigType" and "cnn" in str(config_type["values"])
    ]
    assert enums == [["cnn", "softmax"]]
    assert {name: answer.data["launchRun"] for name, answer in answers.items()} == {
        "plugin": {
            "__typename": "RunConfigValidationInvalid",
            "errors": [
                {
                    "message": "Value at path root:ops:trained_model:config:plugin not in enum type "
                    f"Literal['cnn', 'softmax'] got {marker_module.import_path}"
                }
            ],
        },
        "artifacts": {
            "__typename": "RunConfigValidationInvalid",
            "errors": [
                {
                    "message": 'Received unexpected config entry "root" at path root:resources:artifacts:config. '
                    'Expected: "{ }".'
                }
            ],
        },
        "io_manager": {
            "__typename": "RunConfigValidationInvalid",
            "errors": [
                {
                    "message": 'Received unexpected config entry "base_dir" at path root:resources:io_manager:config. '
                    'Expected: "{ }".'
                }
            ],
        },
    }
    assert runs == []
    assert not (tmp_path / "elsewhere").exists()
    assert not marker_module.marker.exists()


@pytest.mark.e2e
def test_mlops_run_refuses_an_import_path_before_any_asset_runs(marker_module: MarkerModule, tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = tmp_path / "plugin.yaml"
    config.write_text(f"ops: {{trained_model: {{config: {{plugin: '{marker_module.import_path}', epochs: 1}}}}}}\n")
    env = {**os.environ, "MLOPS_HOME": str(home), "PYTHONPATH": str(marker_module.directory)}
    for key in ("MLOPS_DATASET", "MLOPS_REGISTRY_URL", "DAGSTER_HOME", "BENTOML_HOME", ALLOW_IMPORT_PATHS_ENV):
        env.pop(key, None)
    completed = subprocess.run(
        [MLOPS, "run", "--config", str(config)], env=env, capture_output=True, text=True, timeout=300
    )
    assert completed.returncode != 0, completed.stdout
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("error: ") and "ops.trained_model.config.plugin" in lines[0], lines[0]
    assert repr(marker_module.import_path) in lines[0] and "'cnn', 'softmax'" in lines[0], lines[0]
    assert not marker_module.marker.exists()
    assert not (home / "artifacts" / "validated_images").exists()
