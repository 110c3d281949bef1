"""Evaluation: metrics of the trained model on the held-out test split."""

import dagster as dg

from mlops_assets.defs.metadata import markdown_table, png_markdown
from mlops_assets.defs.versioning import code_version_metadata, own_code_version
from mlops_assets.lib.code_fingerprint import derived_version
from mlops_assets.lib.evaluation import EvaluationReport, evaluate_package, load_report, save_report
from mlops_assets.lib.plots import confusion_matrix_png
from mlops_assets.lib.training import TrainedModel
from mlops_assets.lib.validated_data import ValidatedDataset
from mlops_assets.resources.artifacts import LocalArtifactStore


@dg.asset(
    group_name="evaluation",
    kinds={"python"},
    automation_condition=dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed(),
)
def model_evaluation(
    context: dg.AssetExecutionContext,
    trained_model: TrainedModel,
    validated_images: ValidatedDataset,
    artifacts: LocalArtifactStore,
) -> dg.Output[EvaluationReport]:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on the test split."""
    version = derived_version(trained_model.version, validated_images.version, own_code_version(context))
    report_path = artifacts.path_for("model_evaluation", version) / "report.json"
    cache_hit = report_path.exists()
    if cache_hit:
        report = load_report(report_path)
    else:
        report = evaluate_package(trained_model.directory, validated_images, version=version)
        save_report(report, report_path)
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
            **code_version_metadata(context, cache_hit, version),
        },
    )
