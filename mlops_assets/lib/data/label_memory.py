"""The label set a dataset root was first accepted with, so a new or vanished class is flagged later."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

from mlops_assets.lib.atomic import atomic_write_text


class LabelMemory:
    """One small JSON file per dataset root (keyed by a hash of its absolute path) in a directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path_for(self, dataset_root: str) -> Path:
        return self.directory / f"{hashlib.sha256(dataset_root.encode()).hexdigest()[:16]}.json"

    def recall(self, dataset_root: str) -> tuple[str, ...] | None:
        path = self.path_for(dataset_root)
        if not path.exists():
            return None
        return tuple(json.loads(path.read_text())["labels"])

    def remember(self, dataset_root: str, labels: tuple[str, ...], data_version: str) -> Path:
        """Record the labels once; an existing record is kept (delete the file to accept a new label set)."""
        path = self.path_for(dataset_root)
        if path.exists():
            return path
        record = {
            "dataset_root": dataset_root,
            "labels": sorted(labels),
            "data_version": data_version,
            "recorded_at": datetime.now(UTC).isoformat(),
        }
        atomic_write_text(path, json.dumps(record, indent=1))
        return path
