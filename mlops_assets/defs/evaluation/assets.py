"""Evaluation: metrics of the trained model, and of the production model, on the held-out test split."""

import dataclasses

import dagster as dg

from mlops_assets.defs.groups import MODEL, presentation
from mlops_assets.defs.metadata import png_markdown, table
from mlops_assets.defs.pictures import confusion_thumbnail
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
PER_CLASS_COLUMNS = {
    "label": "Class",
    "precision": "Share of the images predicted as this class that are of it (0 to 1)",
    "recall": "Share of this class's images predicted as it (0 to 1)",
    "f1": "Harmonic mean of precision and recall (0 to 1)",
    "support": "Test images of this class",
}


def confusion_table(matrix: list[list[int]], labels: list[str]) -> dg.TableMetadataValue:
    """The confusion matrix as a table: one row per true class, one column of counts per predicted class."""
    rows = [
        {"true label": label, **dict(zip(labels, counts, strict=True))}
        for label, counts in zip(labels, matrix, strict=True)
    ]
    descriptions = {"true label": "The images' class", **{label: f"Predicted as {label}" for label in labels}}
    return table(rows, descriptions)


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
        metadata["per_class_vs_champion"] = table(
            class_regressions(report.metrics, champion.metrics),
            {
                "label": "Class",
                "candidate_f1": "F1 of this model on the test split",
                "champion_f1": "F1 of the production model on the same split",
                "change": "candidate_f1 - champion_f1",
            },
        )
    return metadata


@dg.asset(
    **presentation(MODEL),
    kinds={"scikitlearn"},
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
            # Metrics first, each a number Dagster plots across materializations, per class too.
            # Exact values: the bento's lineage and the registry record the same numbers.
            "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"],
            "num_test_images": metrics["num_examples"],
            "per_class": table(metrics["per_class"], PER_CLASS_COLUMNS),
            "confusion_matrix": confusion_thumbnail(metrics["confusion_matrix"]),
            **{f"f1_{row['label']}": row["f1"] for row in metrics["per_class"]},
            "confusion_matrix_counts": confusion_table(metrics["confusion_matrix"], validated_images.labels),
            "confusion_matrix_plot": png_markdown(
                confusion_matrix_png(metrics["confusion_matrix"], validated_images.labels), "confusion matrix"
            ),
            **_champion_metadata(report),
            "weights_sha256": report.weights_sha256,
            **code_version_metadata(context, cache_hit, version),
        },
    )
