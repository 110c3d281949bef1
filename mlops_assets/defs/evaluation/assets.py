"""Evaluation: metrics of the trained model on the held-out test split."""

import dagster as dg

from mlops_assets.defs.metadata import markdown_table, png_markdown
from mlops_assets.lib.evaluation import EvaluationReport, evaluate_package
from mlops_assets.lib.plots import confusion_matrix_png
from mlops_assets.lib.training import TrainedModel
from mlops_assets.lib.validated_data import ValidatedDataset


@dg.asset(group_name="evaluation", code_version="1", kinds={"python"})
def model_evaluation(trained_model: TrainedModel, validated_images: ValidatedDataset) -> dg.Output[EvaluationReport]:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix on the test split."""
    report = evaluate_package(trained_model.directory, validated_images)
    metrics = report.metrics
    return dg.Output(
        report,
        data_version=dg.DataVersion(f"{trained_model.weights_sha256[:16]}-{validated_images.data_version[:16]}"),
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
        },
    )
