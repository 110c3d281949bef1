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

from mlops_assets.lib.baseline import baseline_statistics
from mlops_assets.lib.data_validation import CheckOutcome, GxSession, quarantine_reasons, run_dataset_suites
from mlops_assets.lib.errors import DatasetError, InvalidImageError
from mlops_assets.lib.expectation_profiles import DEFAULT_PROFILE, ExpectationProfile
from mlops_assets.lib.image_stats import STAT_COLUMNS, image_statistics
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
QUARANTINE_FILE = "quarantine.csv"
BASELINE_FILE = "baseline.json"


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
    num_quarantined: int = 0
    dataset_root: str = ""
    profile: str = DEFAULT_PROFILE
    # The asset's own data version (derived from the manifest's version, code version and config).
    version: str = ""
    # Files decoded by the build that produced this dataset; the rest were reused from the previous build.
    num_decoded_now: int = 0

    @property
    def image_spec(self) -> ImageSpec:
        return ImageSpec.from_dict(self.spec)

    def statistics(self) -> pd.DataFrame:
        """One row per image file: split, hash, size, decoded statistics, `quarantine_reason` ('' if kept)."""
        return pd.read_csv(Path(self.directory) / "stats.csv", keep_default_na=False, dtype={"label": str})

    def quarantine(self) -> pd.DataFrame:
        """Every file not trained on: path, label, reason (undecodable, out of bounds, skipped at ingest)."""
        return pd.read_csv(Path(self.directory) / QUARANTINE_FILE, keep_default_na=False, dtype={"label": str})

    def outcomes(self) -> list[CheckOutcome]:
        """The dataset-level Great Expectations outcomes computed when the data was validated."""
        records = json.loads((Path(self.directory) / "validation.json").read_text())["outcomes"]
        return [CheckOutcome(**record) for record in records]

    def baseline(self) -> dict:
        return json.loads((Path(self.directory) / BASELINE_FILE).read_text())

    @property
    def data_docs_index(self) -> Path:
        return Path(self.directory) / "data_docs" / "index.html"

    def load_split(self, split: Split) -> ArrayDataset:
        """The decoded images of one split; quarantined images are not in any split."""
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


def decode_file(path: str, height: int, width: int, channels: int) -> tuple[np.ndarray | None, dict]:
    """A pure function of (file, target geometry): the model input and statistics, or the reason it fails."""
    try:
        image = decode_image(Path(path).read_bytes())
        array = to_uint8_array(image, height, width, channels)
    except InvalidImageError as error:
        # Nulls, not zeros: only the decoding expectation should report an undecodable file.
        return None, {"error": str(error), **dict.fromkeys(STAT_COLUMNS)}
    return array, {"error": "", **image_statistics(image, array)}


def _decode(task: tuple[str, int, int, int]) -> tuple[np.ndarray | None, dict]:
    return decode_file(*task)


def _map(function, items: list, workers: int | None):
    if len(items) < _PARALLEL_THRESHOLD or (workers or os.cpu_count() or 1) <= 1:
        return [function(item) for item in items]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, items, chunksize=256))


class DecodedCache:
    """Decoded arrays and statistics of a previous build, by content hash, for one target geometry."""

    def __init__(self, previous: ValidatedDataset | None) -> None:
        self._geometry: tuple[int, int, int] | None = None
        self._rows: dict[str, dict] = {}
        self._array_index: dict[str, int] = {}
        self._images: np.ndarray | None = None
        if previous is None or not (Path(previous.directory) / "stats.csv").exists():
            return
        spec = previous.image_spec
        self._geometry = (spec.height, spec.width, spec.channels)
        stats = previous.statistics()
        kept = stats["quarantine_reason"] == ""
        self._images = np.load(Path(previous.directory) / "images.npy", mmap_mode="r")
        for position, (_, row) in enumerate(stats[kept].iterrows()):
            self._array_index[row["sha256"]] = position
        # Only files that decoded are reused; the few that failed are simply decoded again.
        for _, row in stats[stats["error"] == ""].iterrows():
            self._rows[row["sha256"]] = {
                "error": "",
                "width": int(float(row["width"])),
                "height": int(float(row["height"])),
                "mode": str(row["mode"]),
                "brightness": float(row["brightness"]),
                "contrast": float(row["contrast"]),
            }

    def header(self, sha256: str) -> tuple[int, int, str] | None:
        row = self._rows.get(sha256)
        return (row["width"], row["height"], row["mode"]) if row else None

    def decoded(self, sha256: str, geometry: tuple[int, int, int]) -> tuple[np.ndarray | None, dict] | None:
        """The stored decode result for this content at this geometry, or None when it must be decoded."""
        if geometry != self._geometry or sha256 not in self._rows or sha256 not in self._array_index:
            return None
        return np.array(self._images[self._array_index[sha256]]), dict(self._rows[sha256])


def _within_profile(header: tuple[int, int, str] | str, profile: ExpectationProfile) -> bool:
    if isinstance(header, str):
        return False
    width, height, mode = header
    sides_ok = profile.min_side <= min(width, height) and max(width, height) <= profile.max_side
    return mode in profile.allowed_modes and sides_ok


def build_validated_dataset(
    manifest: DatasetManifest,
    geometry: GeometryConfig,
    destination: Path,
    workers: int | None = None,
    profile: ExpectationProfile | None = None,
    expected_labels: tuple[str, ...] = (),
    labels_source: str = "configured",
    previous: ValidatedDataset | None = None,
    version: str = "",
) -> ValidatedDataset:
    """Decode every manifest entry once, quarantine files failing the per-file expectations, run the dataset
    expectations, and write arrays, statistics, quarantine report, baseline and Data Docs atomically.

    With `previous` (an earlier build), files whose content it already decoded at the same geometry are reused,
    so adding one image decodes one image.
    """
    profile = profile or ExpectationProfile()
    cache = DecodedCache(previous)
    paths = [str(manifest.absolute_path(entry)) for entry in manifest.entries]
    known_headers = [cache.header(entry.sha256) for entry in manifest.entries]
    unknown = [path for path, header in zip(paths, known_headers, strict=True) if header is None]
    read_headers = iter(_map(_read_header, unknown, workers))
    headers = [header if header is not None else next(read_headers) for header in known_headers]
    # One stray CMYK or giant file must not decide the geometry (e.g. turn a greyscale dataset into RGB).
    usable = [header for header in headers if _within_profile(header, profile)]
    if not usable:
        raise DatasetError(
            f"None of the {len(paths)} files under {manifest.root} is an image within the expectation profile "
            f"{profile.name!r} (modes {list(profile.allowed_modes)}, sides {profile.min_side}-{profile.max_side} px)."
        )
    height, width, channels = infer_geometry(
        [(w, h) for w, h, _ in usable], [mode for _, _, mode in usable], geometry.max_side
    )
    height, width = geometry.height or height, geometry.width or width
    channels = geometry.channels or channels
    geometry_key = (height, width, channels)
    results: list = [cache.decoded(entry.sha256, geometry_key) for entry in manifest.entries]
    to_decode = [index for index, result in enumerate(results) if result is None]
    decoded = _map(_decode, [(paths[index], height, width, channels) for index in to_decode], workers)
    for index, result in zip(to_decode, decoded, strict=True):
        results[index] = result

    rows = [
        {"path": e.path, "label": e.label, "split": e.split, "sha256": e.sha256, "size_bytes": e.size, **stats}
        for e, (_, stats) in zip(manifest.entries, results, strict=True)
    ]
    stats = pd.DataFrame(rows)
    skipped = pd.DataFrame([s.__dict__ for s in manifest.skipped], columns=["path", "reason"])

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=destination.parent))
    try:
        session = GxSession(staging / "data_docs")
        stats["quarantine_reason"] = quarantine_reasons(session, stats, profile)
        kept = (stats["quarantine_reason"] == "").to_numpy()
        labels = manifest.labels
        label_index = {label: index for index, label in enumerate(labels)}
        arrays = [array for (array, _), keep in zip(results, kept, strict=True) if keep]
        images = np.stack(arrays) if arrays else np.zeros((0, channels, height, width), dtype=np.uint8)
        splits = np.asarray([SPLIT_CODES[split] for split in stats["split"][kept]], dtype=np.uint8)
        label_codes = np.asarray([label_index[label] for label in stats["label"][kept]], dtype=np.int64)
        train_images = images[splits == SPLIT_CODES["train"]]
        if len(train_images) == 0:
            raise DatasetError(
                f"The training split of {manifest.root} is empty after quarantine ({int((~kept).sum())} of "
                f"{len(kept)} files quarantined, e.g. {stats['quarantine_reason'][~kept].head(3).tolist()}); add "
                "more images (about 70% of files, chosen by content hash, go to training)."
            )
        mean, std = channel_statistics(train_images)
        spec = ImageSpec(height, width, channels, mean, std)
        split_counts = {name: int((splits == code).sum()) for name, code in SPLIT_CODES.items()}
        outcomes = run_dataset_suites(session, stats, skipped, profile, expected_labels, labels_source)
        session.build_docs()

        np.save(staging / "images.npy", images)
        np.save(staging / "labels.npy", label_codes)
        np.save(staging / "splits.npy", splits)
        stats.to_csv(staging / "stats.csv", index=False)
        quarantined = pd.concat(
            [
                stats.loc[~kept, ["path", "label", "quarantine_reason"]].rename(
                    columns={"quarantine_reason": "reason"}
                ),
                skipped.assign(label=""),
            ],
            ignore_index=True,
        )
        quarantined[["path", "label", "reason"]].to_csv(staging / QUARANTINE_FILE, index=False)
        train_rows = stats[kept & (stats["split"] == "train").to_numpy()]
        (staging / BASELINE_FILE).write_text(json.dumps(baseline_statistics(train_rows), indent=1))
        (staging / "validation.json").write_text(
            json.dumps(
                {"profile": profile.to_dict(), "outcomes": [outcome.to_dict() for outcome in outcomes]},
                indent=1,
                default=str,
            )
        )
        (staging / "dataset.json").write_text(
            json.dumps(
                {
                    "data_version": manifest.data_version,
                    "spec": spec.to_dict(),
                    "labels": list(labels),
                    "split_counts": split_counts,
                    "profile": profile.name,
                    "num_invalid": int((stats["error"] != "").sum()),
                    "num_quarantined": len(quarantined),
                    "dataset_root": manifest.root,
                    "version": version,
                    "num_decoded_now": len(to_decode),
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
        num_quarantined=document["num_quarantined"],
        dataset_root=document["dataset_root"],
        profile=document["profile"],
        version=document["version"],
        num_decoded_now=document["num_decoded_now"],
    )
