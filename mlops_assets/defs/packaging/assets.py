"""Packaging: the evaluated model stored in BentoML and built into a servable bento."""

from pathlib import Path

import dagster as dg
import pydantic

from mlops_assets import settings
from mlops_assets.defs.groups import DEPLOYMENT, presentation
from mlops_assets.defs.metadata import home_path
from mlops_assets.defs.training_inputs import training_inputs
from mlops_assets.defs.versioning import code_version_metadata, own_code_version
from mlops_assets.lib.code_fingerprint import derived_version
from mlops_assets.lib.models.evaluation import EvaluationReport
from mlops_assets.lib.models.model_package import read_package_document
from mlops_assets.lib.models.training import TrainedModel
from mlops_assets.lib.provenance import UNKNOWN, GitState, git_state
from mlops_assets.lib.registry.registry import NewVersion, Registration
from mlops_assets.packaging import BentoArtifact, bento_target, build_service_bento, serving_arguments, store_model
from mlops_assets.resources.artifacts import ArtifactStore
from mlops_assets.resources.bento_store import BentoStore
from mlops_assets.resources.registry import ModelRegistryResource


class BentoConfig(dg.Config):
    """Name of the model in the BentoML store."""

    model_name: str = pydantic.Field(
        default="image-classifier",
        max_length=63,
        pattern=r"^[a-z0-9]([-._a-z0-9]*[a-z0-9])?$",
        description="A BentoML name: lowercase letters, digits, '-', '_' and '.', at most 63 characters.",
        json_schema_extra={"allowed": "lowercase letters, digits, '-', '_' and '.' (at most 63, alphanumeric ends)"},
    )


@dg.asset(
    **presentation(DEPLOYMENT),
    # BentoML has no icon in the UI; a bento is a servable image (Docker icon).
    kinds={"bentoml", "docker"},
    automation_condition=dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed(),
)
def bento(
    context: dg.AssetExecutionContext,
    config: BentoConfig,
    trained_model: TrainedModel,
    model_evaluation: EvaluationReport,
    registry: ModelRegistryResource,
    artifacts: ArtifactStore,
    bento_store: BentoStore,
) -> dg.Output[BentoArtifact]:
    """The trained model with its lineage built into a bento, kept in the environment's bento store, registered."""
    if model_evaluation.weights_sha256 != trained_model.weights_sha256:
        raise ValueError("model_evaluation evaluated a different model than trained_model; rematerialize both.")
    package_uri = artifacts.uri("trained_model", trained_model.version)
    trained_model = artifacts.local_copy(trained_model, "trained_model")
    git = git_state(settings.PROJECT_ROOT)
    graph = context.job_def.asset_layer.asset_graph
    # BentoML model metadata takes no None: assets without a code version are left out.
    code_versions = {
        key.to_user_string(): graph.get(key).code_version
        for key in graph.get_all_asset_keys()
        if graph.get(key).code_version is not None
    }
    metrics = model_evaluation.metrics
    # The dataset, the input step's config, libraries and hardware: what `mlops reproduce` needs besides the above.
    inputs = training_inputs(context, trained_model.version, trained_model.device)
    dataset = f"{inputs['dataset_name']}@{inputs['dataset_version']}" if inputs["dataset_name"] else None
    lineage = {
        "data_version": trained_model.data_version,
        # BentoML metadata holds no None: a folder outside the catalogue is named by its path.
        "dataset": dataset or inputs["dataset_source"] or UNKNOWN,
        "weights_sha256": trained_model.weights_sha256,
        "plugin": trained_model.plugin,
        "hyperparameters": {**trained_model.settings, "plugin_params": trained_model.params},
        "training_seconds": round(trained_model.training_seconds, 3),
        "training_device": trained_model.device,
        "code_versions": code_versions,
        "git_commit": git.commit,
        # BentoML metadata holds no None: an unknown state is recorded as "unknown", never as clean.
        "git_dirty": git.dirty if git.dirty is not None else UNKNOWN,
        "dagster_run_id": context.run.run_id,
        "metrics": {
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "num_test_images": metrics["num_examples"],
        },
    }
    labels = {
        "data_version": trained_model.data_version[:16],
        "git_commit": git.commit[:12],
        "git_dirty": git.dirty_label,
        "plugin": trained_model.plugin,
        "accuracy": f"{metrics['accuracy']:.4f}",
    }
    # Checked against the model's labels: an alert label it does not have could never fire.
    serving = serving_arguments(read_package_document(Path(trained_model.directory))["labels"])
    # The image target (CPU torch, or CUDA torch where a stage deploys to Cloud Run) is part of the bento's version;
    # local bentos keep the versions they had before there were targets.
    target = bento_target()
    # From the candidate's own metrics, not the evaluation's version: a new champion changes that version, but
    # not this bento.
    version = derived_version(
        trained_model.version,
        model_evaluation.metrics,
        own_code_version(context),
        config.model_dump(),
        serving,
        *(() if target == "local" else (target,)),
    )
    model_tag = store_model(trained_model.directory, config.model_name, trained_model.version[:20], labels, lineage)
    artifact, cache_hit = build_service_bento(
        model_tag,
        labels={"model_tag": model_tag.replace(":", "-"), **labels},
        serving=serving,
        version=version,
        plugin=trained_model.plugin,
        target=target,
    )
    context.log.info(f"{'Reusing' if cache_hit else 'Built'} bento {artifact.bento_tag} serving model {model_tag}")
    # Kept where every machine of the environment finds it before the registry may name it.
    bento_uri = bento_store.publish(model_tag, artifact.bento_tag)
    registration = _register(
        context, config, trained_model, model_evaluation, artifact, lineage, git, registry, package_uri, inputs
    )
    return dg.Output(
        artifact,
        data_version=dg.DataVersion(version),
        metadata={
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "bento_tag": artifact.bento_tag,
            "bento_target": target,
            "model_tag": model_tag,
            "serve_command": f"mlops deploy local --bento {artifact.bento_tag}",
            # The version number never changes; its status does, so the current one is on model_promotion, and
            # this records only what registering found when the bento was built.
            "registry_version": registration.version.number,
            "registration_when_built": (
                f"registered as version {registration.version.number} ({registration.version.status})"
                if registration.created
                else f"the same model is already version {registration.version.number} "
                f"({registration.version.status}); not registered again"
            ),
            "current_status": "see the model_promotion asset (or `mlops models list`)",
            "git_commit": git.commit,
            "git_dirty": git.dirty_label,
            "bento_path": home_path(artifact.bento_path),
            "bento_uri": home_path(bento_uri),
            "lineage": dg.MetadataValue.json(lineage),
            **code_version_metadata(context, cache_hit, version),
        },
    )


def _register(
    context: dg.AssetExecutionContext,
    config: BentoConfig,
    trained_model: TrainedModel,
    model_evaluation: EvaluationReport,
    artifact: BentoArtifact,
    lineage: dict,
    git: GitState,
    registry: ModelRegistryResource,
    package_uri: str,
    inputs: dict,
) -> Registration:
    """One transaction, only once the model and the bento exist: a crash before this leaves the registry untouched."""
    package = read_package_document(Path(trained_model.directory))
    package_info = package["info"]
    champion = model_evaluation.champion
    new = NewVersion(
        model_name=config.model_name,
        model_tag=artifact.model_tag,
        bento_tag=artifact.bento_tag,
        package_path=package_uri,
        weights_sha256=trained_model.weights_sha256,
        plugin=trained_model.plugin,
        labels=list(package["labels"]),
        data_version=trained_model.data_version,
        dataset_size=package_info["num_train"] + package_info["num_val"] + model_evaluation.metrics["num_examples"],
        code_versions=lineage["code_versions"],
        git_commit=git.commit,
        git_dirty=git.dirty,
        hyperparameters=lineage["hyperparameters"],
        metrics={key: model_evaluation.metrics[key] for key in ("accuracy", "macro_f1", "num_examples", "per_class")},
        training_seconds=lineage["training_seconds"],
        training_device=lineage["training_device"],
        parent_version=champion.version if champion else None,
        dagster_run_id=context.run.run_id,
        **inputs,
    )
    with registry.open() as models:
        return models.register(new, actor=f"dagster run {context.run.run_id}")
