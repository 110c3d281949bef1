"""Deterministic train/validation/test assignment from a file's content hash."""

from __future__ import annotations

from typing import Literal

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
SPLIT_CODES: dict[Split, int] = {name: code for code, name in enumerate(SPLITS)}

# Fractions of the hash space; the test share never changes with data growth, so a file never moves.
TRAIN_FRACTION = 0.70
VALIDATION_FRACTION = 0.15
_BUCKETS = 10_000


def assign_split(content_sha256: str) -> Split:
    """Split for a file, decided only by its content: identical bytes always land in the same split."""
    bucket = int(content_sha256[:12], 16) % _BUCKETS
    if bucket < TRAIN_FRACTION * _BUCKETS:
        return "train"
    if bucket < (TRAIN_FRACTION + VALIDATION_FRACTION) * _BUCKETS:
        return "val"
    return "test"
