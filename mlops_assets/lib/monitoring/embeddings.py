"""Embedding drift: the model's penultimate-layer embeddings of live inputs against those of its held-out images.

A shift the per-image statistics miss (other kinds of images of the same brightness and size) moves the embedding.
Evidently's domain-classifier method measures it: a classifier learns to tell the day's embeddings from the
baseline's, and its ROC AUC on held-out rows is the statistic (0.5: indistinguishable, 1: fully separable).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from mlops_assets.lib.monitoring.settings import Thresholds
from mlops_assets.lib.monitoring.verdicts import NOT_ENOUGH_DATA, SignalVerdict, grade

EMBEDDING = "input.embedding"
EMBEDDING_METHOD = "domain classifier ROC AUC"
# The reference is sampled down to this many rows: the classifier's cost grows with it, its AUC barely does.
MAX_REFERENCE_EMBEDDINGS = 5000


def embedding_drift(current: np.ndarray, reference: np.ndarray, thresholds: Thresholds, min_rows: int) -> SignalVerdict:
    """The verdict on `current` [N, D] against `reference` [M, D] (both compacted alike); "not enough data" with
    fewer than `min_rows` rows on either side or dimensions that differ."""
    if len(current) < min_rows or len(reference) < min_rows:
        detail = (
            f"{len(current)} logged embedding(s) against {len(reference)} in the baseline; at least {min_rows} needed"
        )
        return SignalVerdict(EMBEDDING, NOT_ENOUGH_DATA, detail=detail + " (monitoring.min_embeddings)")
    if current.shape[1] != reference.shape[1]:
        detail = (
            f"logged embeddings have {current.shape[1]} numbers, the baseline's {reference.shape[1]}: the service "
            "logs with another monitoring.capture.embeddings.max_dims or another model"
        )
        return SignalVerdict(EMBEDDING, NOT_ENOUGH_DATA, detail=detail)
    # Imported here: Evidently takes seconds to import, and only monitoring runs need it. The method itself, not the
    # EmbeddingsDrift metric: the metric also fits a t-SNE map for its plot, which costs far more than the test.
    from evidently.metrics.embeddings import ModelDriftMethod

    if len(reference) > MAX_REFERENCE_EMBEDDINGS:
        keep = np.random.default_rng(0).choice(len(reference), MAX_REFERENCE_EMBEDDINGS, replace=False)
        reference = reference[np.sort(keep)]
    # Its own threshold is not used: the AUC is graded against monitoring.embedding's drift and severe thresholds.
    method = ModelDriftMethod(threshold=thresholds.drift)
    with warnings.catch_warnings():
        # The classifier may stop before converging on a few hundred rows; its AUC is still what is measured.
        warnings.simplefilter("ignore")
        auc, _, _ = method(pd.DataFrame(current), pd.DataFrame(reference))
    detail = f"{len(current)} logged embedding(s) of {current.shape[1]} numbers against {len(reference)} held-out"
    return grade(EMBEDDING, float(auc), EMBEDDING_METHOD, thresholds.drift, thresholds.severe, detail)
