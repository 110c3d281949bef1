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
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.models.model_package import load_package

BASELINE_FILE = "baseline.json"
INPUTS_FILE = "inputs.csv"
PREDICTIONS_FILE = "predictions.csv"
# The plug-in's penultimate-layer embeddings of the held-out images [N, D] (float16), for plug-ins that have one.
EMBEDDINGS_FILE = "embeddings.npy"
# Bound the reference rows (the baseline is read at every monitoring run); a seeded sample beyond this.
MAX_REFERENCE_ROWS = 20_000
HELD_OUT_SPLITS = ("val", "test")


class DamagedBaseline(MLOpsError):
    """A stored baseline with a file that cannot be read (cut short, emptied, edited): `file` names it, `reason` why."""

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"{file} is damaged ({reason}); rematerialize monitoring_baseline")
        self.file, self.reason = file, reason


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
    # The model's plug-in, and the size of its embedding (0: the plug-in has none, or the baseline predates them).
    plugin: str = ""
    embedding_dims: int = 0

    def embeddings(self) -> np.ndarray | None:
        """The held-out images' embeddings [num_predictions, embedding_dims] (float32), None without them."""
        path = Path(self.directory) / EMBEDDINGS_FILE
        return np.load(path).astype(np.float32) if self.embedding_dims and path.is_file() else None

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


def _held_out_predictions(
    data: ValidatedDataset, package: Path, max_rows: int
) -> tuple[pd.DataFrame, np.ndarray | None, str]:
    """Label and confidence per held-out image, their embeddings (None without), and the plug-in's name."""
    model = load_package(package, device="cpu")
    images = np.concatenate([data.load_split(split).images for split in HELD_OUT_SPLITS])
    if len(images) > max_rows:
        images = images[np.random.default_rng(0).choice(len(images), max_rows, replace=False)]
    probabilities, embeddings = model.predict_uint8_with_embedding(images)
    best = probabilities.argmax(axis=1) if len(images) else np.zeros(0, dtype=int)
    predictions = pd.DataFrame(
        {
            "label": [model.labels[index] for index in best.tolist()],
            "confidence": probabilities[np.arange(len(best)), best] if len(images) else np.zeros(0),
        }
    )
    return predictions, embeddings, model.plugin.name


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
    predictions, embeddings, plugin = _held_out_predictions(data, package, max_rows)
    document = {
        "weights_sha256": weights_sha256,
        "data_version": data.data_version,
        "code_version": code_version,
        "num_inputs": len(inputs),
        "num_predictions": len(predictions),
        "labels": list(data.labels),
        "plugin": plugin,
        "embedding_dims": 0 if embeddings is None else int(embeddings.shape[1]),
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    with atomic_directory(destination) as staging:
        inputs.to_csv(staging / INPUTS_FILE, index=False)
        predictions.to_csv(staging / PREDICTIONS_FILE, index=False)
        if embeddings is not None:
            # Full size: monitoring compacts them to the size the service logged (compact_embedding).
            np.save(staging / EMBEDDINGS_FILE, embeddings.astype(np.float16))
        (staging / BASELINE_FILE).write_text(json.dumps(document, indent=1))
    return load_monitoring_baseline(destination)


def load_monitoring_baseline(directory: Path) -> MonitoringBaseline:
    """Reopen a stored baseline; raises FileNotFoundError when `directory` holds none and DamagedBaseline when its
    baseline.json cannot be read."""
    text = (directory / BASELINE_FILE).read_text(encoding="utf-8", errors="replace")
    try:
        document = json.loads(text)
        return MonitoringBaseline(
            directory=str(directory),
            weights_sha256=str(document["weights_sha256"]),
            data_version=str(document["data_version"]),
            code_version=str(document["code_version"]),
            num_inputs=int(document["num_inputs"]),
            num_predictions=int(document["num_predictions"]),
            labels=tuple(str(label) for label in document["labels"]),
            plugin=str(document.get("plugin", "")),
            embedding_dims=int(document.get("embedding_dims", 0)),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise DamagedBaseline(BASELINE_FILE, f"{type(error).__name__}: {error}") from None


_COLUMNS = {INPUTS_FILE: STAT_COLUMNS, PREDICTIONS_FILE: ("label", "confidence")}


def check_baseline_files(baseline: MonitoringBaseline) -> None:
    """Read every file of `baseline` once; raises DamagedBaseline naming the first that is missing, empty, not CSV,
    short of its columns or rows, or (embeddings) not the array baseline.json describes."""
    expected = {INPUTS_FILE: baseline.num_inputs, PREDICTIONS_FILE: baseline.num_predictions}
    for name, read in ((INPUTS_FILE, baseline.inputs), (PREDICTIONS_FILE, baseline.predictions)):
        try:
            frame = read()
        except (OSError, ValueError, pd.errors.EmptyDataError, pd.errors.ParserError) as error:
            raise DamagedBaseline(name, f"{type(error).__name__}: {error}") from None
        missing = [column for column in _COLUMNS[name] if column not in frame.columns]
        if missing:
            raise DamagedBaseline(name, f"no column(s) {', '.join(missing)}")
        if len(frame) != expected[name]:
            raise DamagedBaseline(name, f"{len(frame)} row(s), baseline.json says {expected[name]}")
    if baseline.embedding_dims and (Path(baseline.directory) / EMBEDDINGS_FILE).is_file():
        try:
            embeddings = baseline.embeddings()
        except (OSError, ValueError, EOFError) as error:
            raise DamagedBaseline(EMBEDDINGS_FILE, f"{type(error).__name__}: {error}") from None
        if embeddings is not None and embeddings.shape != (baseline.num_predictions, baseline.embedding_dims):
            raise DamagedBaseline(
                EMBEDDINGS_FILE,
                f"shape {embeddings.shape}, expected ({baseline.num_predictions}, {baseline.embedding_dims})",
            )
