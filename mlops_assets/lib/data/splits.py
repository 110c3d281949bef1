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
# Hard cases (`mlops hardcases export`) are named `hardcase-test-...` when they belong to the test split (decided at
# export by content hash and the configured share), `hardcase-...` otherwise; the name keeps them out of the test
# split or in it, so the configured share is what the test split gets.
HARD_CASE_PREFIX = "hardcase-"
HARD_CASE_TEST_PREFIX = "hardcase-test-"


def _bucket(content_sha256: str) -> int:
    return int(content_sha256[:12], 16) % _BUCKETS


def hard_case_in_test(content_sha256: str, test_share: float) -> bool:
    """Whether a hard case goes to the test split: the same content always decides the same way. A different
    slice of the hash than the ordinary splits use, so the share is independent of them."""
    return int(content_sha256[12:24], 16) % _BUCKETS < test_share * _BUCKETS


def assign_split(content_sha256: str, file_name: str = "") -> Split:
    """Split for a file, decided only by its content (identical bytes always land in the same split), except for
    hard cases, whose name says whether they are in the test split (the others are shared between train and
    validation in the ordinary proportion)."""
    bucket = _bucket(content_sha256)
    if file_name.startswith(HARD_CASE_TEST_PREFIX):
        return "test"
    if file_name.startswith(HARD_CASE_PREFIX):
        return "train" if bucket < TRAIN_FRACTION / (TRAIN_FRACTION + VALIDATION_FRACTION) * _BUCKETS else "val"
    if bucket < TRAIN_FRACTION * _BUCKETS:
        return "train"
    if bucket < (TRAIN_FRACTION + VALIDATION_FRACTION) * _BUCKETS:
        return "val"
    return "test"
