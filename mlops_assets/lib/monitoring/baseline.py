"""A model's monitoring baseline: what its training inputs and its held-out predictions looked like.

Live traffic is compared with it signal by signal: the per-image statistics the service logs (the same function,
`image_stats.image_statistics`, computed them for the training split when the data was validated) against the
training split's, and the service's answers (label, confidence) against the model's own answers on the validation
and test splits, which it never trained on.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_assets.lib.atomic import atomic_directory
from mlops_assets.lib.data.image_stats import STAT_COLUMNS
from mlops_assets.lib.data.validated_data import ValidatedDataset
from mlops_assets.lib.models.model_package import load_package

BASELINE_FILE = "baseline.json"
INPUTS_FILE = "inputs.csv"
PREDICTIONS_FILE = "predictions.csv"
# Bound the reference rows (the baseline is read at every monitoring run); a seeded sample beyond this.
MAX_REFERENCE_ROWS = 20_000
HELD_OUT_SPLITS = ("val", "test")


@dataclass(frozen=True)
class MonitoringBaseline:
    """A stored baseline: `inputs` (per-image statistics of training images) and `predictions` (label and confidence
    of the model on held-out images), plus what they were made from."""

    directory: str
    weights_sha256: str
    data_version: str
    code_version: str
    num_inputs: int
    num_predictions: int
    labels: tuple[str, ...]

    def inputs(self) -> pd.DataFrame:
        """Columns of `image_stats.STAT_COLUMNS` (format, width, height, mode, brightness, contrast)."""
        return pd.read_csv(Path(self.directory) / INPUTS_FILE, keep_default_na=False)

    def predictions(self) -> pd.DataFrame:
        """Columns label (text) and confidence (in [0, 1])."""
        return pd.read_csv(Path(self.directory) / PREDICTIONS_FILE, keep_default_na=False, dtype={"label": str})


def _training_inputs(data: ValidatedDataset, max_rows: int) -> pd.DataFrame:
    statistics = data.statistics()
    kept = statistics[(statistics["split"] == "train") & (statistics["quarantine_reason"] == "")]
    if len(kept) > max_rows:
        kept = kept.sample(max_rows, random_state=0)
    return kept[list(STAT_COLUMNS)].reset_index(drop=True)


def _held_out_predictions(data: ValidatedDataset, package: Path, max_rows: int) -> pd.DataFrame:
    model = load_package(package, device="cpu")
    images = np.concatenate([data.load_split(split).images for split in HELD_OUT_SPLITS])
    if len(images) > max_rows:
        images = images[np.random.default_rng(0).choice(len(images), max_rows, replace=False)]
    probabilities = model.predict_uint8(images)
    best = probabilities.argmax(axis=1) if len(images) else np.zeros(0, dtype=int)
    return pd.DataFrame(
        {
            "label": [model.labels[index] for index in best.tolist()],
            "confidence": probabilities[np.arange(len(best)), best] if len(images) else np.zeros(0),
        }
    )


def build_monitoring_baseline(
    data: ValidatedDataset,
    package: Path,
    weights_sha256: str,
    code_version: str,
    destination: Path,
    max_rows: int = MAX_REFERENCE_ROWS,
) -> MonitoringBaseline:
    """Write the baseline of the model package at `package` trained on `data` into `destination` (atomically,
    replacing an older one) and return it."""
    inputs = _training_inputs(data, max_rows)
    predictions = _held_out_predictions(data, package, max_rows)
    document = {
        "weights_sha256": weights_sha256,
        "data_version": data.data_version,
        "code_version": code_version,
        "num_inputs": len(inputs),
        "num_predictions": len(predictions),
        "labels": list(data.labels),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    with atomic_directory(destination) as staging:
        inputs.to_csv(staging / INPUTS_FILE, index=False)
        predictions.to_csv(staging / PREDICTIONS_FILE, index=False)
        (staging / BASELINE_FILE).write_text(json.dumps(document, indent=1))
    return load_monitoring_baseline(destination)


def load_monitoring_baseline(directory: Path) -> MonitoringBaseline:
    """Reopen a stored baseline; raises FileNotFoundError when `directory` holds none."""
    document = json.loads((directory / BASELINE_FILE).read_text())
    return MonitoringBaseline(
        directory=str(directory),
        weights_sha256=document["weights_sha256"],
        data_version=document["data_version"],
        code_version=document["code_version"],
        num_inputs=document["num_inputs"],
        num_predictions=document["num_predictions"],
        labels=tuple(document["labels"]),
    )
