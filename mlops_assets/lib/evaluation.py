"""Evaluate a stored model package on the held-out test split."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from mlops_assets.lib.metrics import classification_report
from mlops_assets.lib.model_package import load_package
from mlops_assets.lib.validated_data import ValidatedDataset


@dataclass(frozen=True)
class EvaluationReport:
    """Test-split metrics (fractions in [0, 1]) of one model package on one data version."""

    model_directory: str
    weights_sha256: str
    data_version: str
    metrics: dict
    # The asset's own data version (derived from the model's and data's versions and the code version).
    version: str = ""

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


def evaluate_package(
    model_directory: str, data: ValidatedDataset, device: str = "auto", version: str = ""
) -> EvaluationReport:
    """Predict every test image with the packaged model and compute the classification report."""
    model = load_package(Path(model_directory), device)
    if tuple(model.labels) != tuple(data.labels):
        raise ValueError(
            f"The model was trained on labels {model.labels} but the data has {data.labels}; retrain the model."
        )
    test = data.load_split("test")
    probabilities = model.predict_uint8(test.images)
    report = classification_report(test.labels, probabilities.argmax(axis=1), data.labels)
    return EvaluationReport(model_directory, model.weights_sha256, data.data_version, report, version)


def save_report(report: EvaluationReport, path: Path) -> None:
    """Write atomically, so an interrupted run never leaves a half report that looks like a cache hit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(asdict(report), indent=1))
    partial.replace(path)


def load_report(path: Path) -> EvaluationReport:
    return EvaluationReport(**json.loads(path.read_text()))
