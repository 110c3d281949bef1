"""Evaluation: metrics of the trained model, and of the production model, on the held-out test split."""

import dataclasses

import dagster as dg

from mlops_assets.defs.metadata import markdown_table, png_markdown
from mlops_assets.defs.versioning import code_version_metadata, own_code_version
from mlops_assets.lib.atomic import atomic_directory
from mlops_assets.lib.code_fingerprint import derived_version
from mlops_assets.lib.data.validated_data import ValidatedDataset
from mlops_assets.lib.models.evaluation import (
    EvaluationReport,
    evaluate_champion,
    evaluate_package,
    load_report,
    save_report,
)
from mlops_assets.lib.models.plots import confusion_matrix_png
from mlops_assets.lib.models.training import TrainedModel
from mlops_assets.lib.registry.gate import class_regressions
from mlops_assets.model_store import version_model_path
from mlops_assets.resources.artifacts import ArtifactStore
from mlops_assets.resources.bento_store import BentoStore
from mlops_assets.resources.registry import ModelRegistryResource

REPORT_FILE = "report.json"


def _champion_metadata(report: EvaluationReport) -> dict[str, object]:
    champion = report.champion
    if champion is None:
        return {"champion": "none: no model in production yet (the gate decides by the floor alone)"}
    metadata: dict[str, object] = {"champion": f"version {champion.version} ({champion.model_tag})"}
    metadata["champion_note"] = champion.note
    if champion.comparable:
        metadata["champion_accuracy"] = champion.metrics["accuracy"]
        metadata["champion_macro_f1"] = champion.metrics["macro_f1"]
        metadata["accuracy_difference"] = report.metrics["accuracy"] - champion.metrics["accuracy"]
        metadata["macro_f1_difference"] = report.metrics["macro_f1"] - champion.metrics["macro_f1"]
        metadata["per_class_vs_champion"] = markdown_table(
            ["label", "candidate F1", "champion F1", "change"],
            [
                [r["label"], r["candidate_f1"], r["champion_f1"], r["change"]]
                for r in class_regressions(report.metrics, champion.metrics)
            ],
        )
    return metadata


@dg.asset(
    group_name="evaluation",
    kinds={"python"},
    automation_condition=dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed(),
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    trained_model: TrainedModel,
    validated_images: ValidatedDataset,
    registry: ModelRegistryResource,
    artifacts: ArtifactStore,
    bento_store: BentoStore,
) -> dg.Output[EvaluationReport]:
    """Test-split metrics of the trained model and, evaluated now on the same split, of the production model."""
    with registry.open() as models:
        production = models.production()
    if production is not None:
        # Brought back from the environment's store when this machine's BentoML store lacks it.
        bento_store.ensure_model(production.model_tag)
    # A production model missing from the store is an error naming `mlops models restore N`, never skipped.
    champion_model = str(version_model_path(production)) if production is not None else None
    champion_weights = production.weights_sha256 if production is not None else "none"
    version = derived_version(
        trained_model.version, validated_images.version, own_code_version(context), champion_weights
    )
    stored = artifacts.fetch("model_evaluation", version)
    cache_hit = stored is not None and (stored / REPORT_FILE).exists()
    if cache_hit:
        report = load_report(stored / REPORT_FILE)
    else:
        # Read locally; the step may run where the upstream steps did not (another run or machine).
        package = artifacts.local_copy(trained_model, "trained_model").directory
        validated_images = artifacts.local_copy(validated_images, "validated_images")
        report = evaluate_package(package, validated_images, version=version)
        if production is not None:
            # The champion is re-evaluated on today's test split, never judged by numbers stored when it was built.
            champion = evaluate_champion(production.number, production.model_tag, champion_model, validated_images)
            report = dataclasses.replace(report, champion=champion)
        with artifacts.publishing("model_evaluation", version) as destination, atomic_directory(destination) as staging:
            save_report(report, staging / REPORT_FILE)
    metrics = report.metrics
    return dg.Output(
        report,
        data_version=dg.DataVersion(version),
        metadata={
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "num_test_images": metrics["num_examples"],
            "per_class": markdown_table(
                ["label", "precision", "recall", "f1", "support"],
                [[c["label"], c["precision"], c["recall"], c["f1"], c["support"]] for c in metrics["per_class"]],
            ),
            "confusion_matrix": png_markdown(
                confusion_matrix_png(metrics["confusion_matrix"], validated_images.labels), "confusion matrix"
            ),
            "weights_sha256": report.weights_sha256,
            **_champion_metadata(report),
            **code_version_metadata(context, cache_hit, version),
        },
    )
