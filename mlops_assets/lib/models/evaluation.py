"""Evaluate a stored model package on the held-out test split."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.lib.atomic import atomic_write_text
from mlops_assets.lib.models.metrics import classification_report
from mlops_assets.lib.models.model_package import load_package, read_package_document

if TYPE_CHECKING:  # validated_data.py imports pandas, PIL and the validation code
    from mlops_assets.lib.data.validated_data import ValidatedDataset


@dataclass(frozen=True)
class EvaluationReport:
    """Test-split metrics (fractions in [0, 1]) of one model package on one data version."""

    model_directory: str
    weights_sha256: str
    data_version: str
    metrics: dict
    # The asset's own data version (derived from the model's and data's versions and the code version).
    version: str = ""
    # The production model evaluated on the same test split, when there is one.
    champion: ChampionEvaluation | None = None

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
    atomic_write_text(path, json.dumps(asdict(report), indent=1))


def load_report(path: Path) -> EvaluationReport:
    document = json.loads(path.read_text())
    champion = document.pop("champion", None)
    return EvaluationReport(**document, champion=ChampionEvaluation(**champion) if champion else None)


@dataclass(frozen=True)
class ChampionEvaluation:
    """The production model (the champion) evaluated now on the candidate's test split, or why it could not be."""

    version: int
    model_tag: str
    weights_sha256: str
    comparable: bool
    metrics: dict | None
    note: str


def evaluate_champion(
    version: int, model_tag: str, model_directory: str, data: ValidatedDataset, device: str = "auto"
) -> ChampionEvaluation:
    """Evaluate the production model on this data; a different label set makes it not comparable (not an error)."""
    document = read_package_document(Path(model_directory))
    if tuple(document["labels"]) != tuple(data.labels):
        note = (
            f"production version {version} was trained on labels {list(document['labels'])} but the data has "
            f"{list(data.labels)}; it cannot be evaluated on this test split"
        )
        return ChampionEvaluation(version, model_tag, document["weights_sha256"], False, None, note)
    report = evaluate_package(model_directory, data, device)
    note = f"production version {version} evaluated on the same {report.metrics['num_examples']} test images"
    return ChampionEvaluation(version, model_tag, report.weights_sha256, True, report.metrics, note)
