"""Decoded, resized training arrays stored once per data version, so training never decodes images."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mlops_assets.lib.errors import DatasetError, InvalidImageError
from mlops_assets.lib.image_stats import image_statistics
from mlops_assets.lib.manifest import DatasetManifest
from mlops_assets.lib.plugins.base import ArrayDataset
from mlops_assets.lib.preprocessing import (
    ImageSpec,
    channel_statistics,
    decode_image,
    infer_geometry,
    to_uint8_array,
)
from mlops_assets.lib.splits import SPLIT_CODES, Split

# Below this many files a process pool costs more than it saves.
_PARALLEL_THRESHOLD = 2_000


@dataclass(frozen=True)
class GeometryConfig:
    """Requested model input geometry; zeros mean 'infer from the data'."""

    height: int = 0
    width: int = 0
    channels: int = 0
    max_side: int = 64


@dataclass(frozen=True)
class ValidatedDataset:
    """Reference to stored arrays (travels along the asset graph instead of the arrays)."""

    directory: str
    data_version: str
    spec: dict
    labels: tuple[str, ...]
    split_counts: dict[str, int]
    num_invalid: int
    # The asset's own data version (derived from the manifest's version, code version and geometry).
    version: str = ""

    @property
    def image_spec(self) -> ImageSpec:
        return ImageSpec.from_dict(self.spec)

    def statistics(self) -> pd.DataFrame:
        return pd.read_csv(Path(self.directory) / "stats.csv", keep_default_na=False)

    def load_split(self, split: Split) -> ArrayDataset:
        """The decoded images of one split; images that failed to decode are not in any split."""
        directory = Path(self.directory)
        images = np.load(directory / "images.npy", mmap_mode="r")
        labels = np.load(directory / "labels.npy")
        mask = np.load(directory / "splits.npy") == SPLIT_CODES[split]
        return ArrayDataset(np.ascontiguousarray(images[mask]), labels[mask], self.image_spec)


def _read_header(path: str) -> tuple[int, int, str] | str:
    try:
        with Image.open(path) as image:
            return image.width, image.height, image.mode
    except Exception as error:  # noqa: BLE001 - any failure is reported per file, never fatal to the scan
        return f"cannot read image header: {error}"


def _decode(task: tuple[str, int, int, int]) -> tuple[np.ndarray | None, dict]:
    path, height, width, channels = task
    try:
        image = decode_image(Path(path).read_bytes())
        array = to_uint8_array(image, height, width, channels)
    except InvalidImageError as error:
        return None, {"error": str(error)}
    return array, {"error": "", **image_statistics(image, array)}


def _map(function, items: list, workers: int | None):
    if len(items) < _PARALLEL_THRESHOLD or (workers or os.cpu_count() or 1) <= 1:
        return [function(item) for item in items]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items, chunksize=256))


def build_validated_dataset(
    manifest: DatasetManifest,
    geometry: GeometryConfig,
    destination: Path,
    workers: int | None = None,
    version: str = "",
) -> ValidatedDataset:
    """Decode every manifest entry once; write arrays, per-image statistics and the spec atomically."""
    paths = [str(manifest.absolute_path(entry)) for entry in manifest.entries]
    headers = _map(_read_header, paths, workers)
    readable = [header for header in headers if not isinstance(header, str)]
    if not readable:
        raise DatasetError(f"None of the {len(paths)} files under {manifest.root} could be opened as an image.")
    height, width, channels = infer_geometry(
        [(w, h) for w, h, _ in readable], [mode for _, _, mode in readable], geometry.max_side
    )
    height, width = geometry.height or height, geometry.width or width
    channels = geometry.channels or channels
    results = _map(_decode, [(path, height, width, channels) for path in paths], workers)

    labels = manifest.labels
    label_index = {label: index for index, label in enumerate(labels)}
    rows, arrays, label_codes, split_codes = [], [], [], []
    for entry, (array, stats) in zip(manifest.entries, results, strict=True):
        rows.append(
            {
                "path": entry.path,
                "label": entry.label,
                "split": entry.split,
                "sha256": entry.sha256,
                "size_bytes": entry.size,
                **stats,
            }
        )
        if array is not None:
            arrays.append(array)
            label_codes.append(label_index[entry.label])
            split_codes.append(SPLIT_CODES[entry.split])
    images = np.stack(arrays) if arrays else np.zeros((0, channels, height, width), dtype=np.uint8)
    splits = np.asarray(split_codes, dtype=np.uint8)
    train_images = images[splits == SPLIT_CODES["train"]]
    if len(train_images) == 0:
        raise DatasetError(
            f"The training split of {manifest.root} is empty after decoding; add more images (about 70% of "
            "files, chosen by content hash, go to training)."
        )
    mean, std = channel_statistics(train_images)
    spec = ImageSpec(height, width, channels, mean, std)
    split_counts = {name: int((splits == code).sum()) for name, code in SPLIT_CODES.items()}
    num_invalid = sum(1 for array, _ in results if array is None)

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=destination.parent))
    try:
        np.save(staging / "images.npy", images)
        np.save(staging / "labels.npy", np.asarray(label_codes, dtype=np.int64))
        np.save(staging / "splits.npy", splits)
        pd.DataFrame(rows).to_csv(staging / "stats.csv", index=False)
        (staging / "dataset.json").write_text(
            json.dumps(
                {
                    "data_version": manifest.data_version,
                    "spec": spec.to_dict(),
                    "labels": list(labels),
                    "split_counts": split_counts,
                    "num_invalid": num_invalid,
                    "version": version,
                },
                indent=1,
            )
        )
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return load_validated_dataset(destination)


def load_validated_dataset(directory: Path) -> ValidatedDataset:
    """Reopen stored arrays written by `build_validated_dataset` (a cache hit: nothing is decoded)."""
    document = json.loads((directory / "dataset.json").read_text())
    return ValidatedDataset(
        directory=str(directory),
        data_version=document["data_version"],
        spec=document["spec"],
        labels=tuple(document["labels"]),
        split_counts=document["split_counts"],
        num_invalid=document["num_invalid"],
        version=document["version"],
    )
