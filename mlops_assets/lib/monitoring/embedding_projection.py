"""The compact form of a model's embeddings that the service logs and monitoring compares.

Its own module, apart from the drift test in `embeddings`: the service imports this on every start, and needs only
numpy for it (the drift test's pandas and Evidently are not in the service's image).
"""

from __future__ import annotations

import functools

import numpy as np

_PROJECTION_SEED = 20260101


def compact_embedding(embeddings: np.ndarray, max_dims: int) -> np.ndarray:
    """[N, D] float32 -> [N, min(D, max_dims)]: unchanged when D <= max_dims, else multiplied by a fixed Gaussian
    random projection (the same for the same D and max_dims, in the service and in the baseline), rounded to
    4 decimals so a log line stays short."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    dims = embeddings.shape[1]
    if dims > max_dims:
        embeddings = embeddings @ _projection(dims, max_dims)
    return np.round(embeddings, 4)


@functools.cache
def _projection(dims: int, max_dims: int) -> np.ndarray:
    """The [dims, max_dims] projection, drawn once per process: drawing it costs more than a small model's whole
    forward pass, and the service compacts embeddings on every logged request."""
    projection = np.random.default_rng(_PROJECTION_SEED + dims * 4099 + max_dims).standard_normal(
        (dims, max_dims), dtype=np.float32
    ) / np.sqrt(max_dims, dtype=np.float32)
    projection.setflags(write=False)  # shared by every caller
    return projection
