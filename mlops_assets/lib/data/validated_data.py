"""Decoded, resized training arrays stored once per data version, so training never decodes images."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mlops_assets.lib.atomic import atomic_directory
from mlops_assets.lib.data.baseline import baseline_statistics
from mlops_assets.lib.data.data_validation import CheckOutcome, GxSession, quarantine_reasons, run_dataset_suites
from mlops_assets.lib.data.expectation_profiles import DEFAULT_PROFILE, ExpectationProfile
from mlops_assets.lib.data.image_policy import ImageHeader, ImagePolicy, read_header
from mlops_assets.lib.data.image_stats import STAT_COLUMNS, image_statistics
from mlops_assets.lib.data.manifest import DatasetManifest
from mlops_assets.lib.data.preprocessing import ImageSpec, channel_statistics, infer_geometry
from mlops_assets.lib.data.splits import SPLIT_CODES, Split
from mlops_assets.lib.errors import DatasetError, InvalidImageError
from mlops_assets.lib.models.plugins.base import ArrayDataset

# Below this many files to read or decode, a process pool (start-up, transfers) costs more than it saves.
PARALLEL_THRESHOLD = 2_000
# At most this many files per pool task; a 64x64 RGB chunk is then 12 MiB.
_MAX_CHUNK = 1_024
QUARANTINE_FILE = "quarantine.csv"
# Told how far a long pass is, one line at a time (the Dagster asset passes its logger).
Progress = Callable[[str], None]
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
    # Entries of the dataset folder skipped as not images (listed in quarantine.csv, not counted as quarantined).
    num_skipped: int = 0
    # The image policy the files were accepted and decoded under (`ImagePolicy.to_dict`); it goes into the model.
    # None only for data validated before policies were recorded (decoded under the default policy's rules).
    image_policy: dict | None = None

    @property
    def image_spec(self) -> ImageSpec:
        return ImageSpec.from_dict(self.spec)

    @property
    def policy(self) -> ImagePolicy:
        return ImagePolicy.from_dict(self.image_policy or {})

    def statistics(self) -> pd.DataFrame:
        """One row per image file: split, hash, size, decoded statistics, `quarantine_reason` ('' if kept)."""
        return pd.read_csv(Path(self.directory) / "stats.csv", keep_default_na=False, dtype={"label": str})

    def quarantine(self) -> pd.DataFrame:
        """Every entry not trained on: path, label (the label folder; '' directly under the root), reason and
        status: `quarantined` (an image file refused by the image policy or a quality rule) or `skipped` (not an
        image: side files, sidecars, hidden or unlabelled entries)."""
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


def decode_file(path: str, geometry: tuple[int, int, int], policy: ImagePolicy) -> tuple[np.ndarray | None, dict]:
    """A pure function of (file, target geometry, policy): the model input and statistics, or the reason the image
    policy refuses the file (the same text the service answers)."""
    height, width, channels = geometry
    try:
        array, header = policy.model_input(Path(path).read_bytes(), height, width, channels)
    except InvalidImageError as error:
        # Nulls, not zeros: only the policy's verdict should report a refused file.
        return None, {"error": str(error), **dict.fromkeys(STAT_COLUMNS)}
    return array, {"error": "", **image_statistics(header, array)}


class DecodedColumns:
    """Decode results of many files as a few arrays (images stacked, one array per statistic) instead of one
    (array, dict) per file: these are what crosses between processes, in one cheap pickle per chunk."""

    def __init__(self, count: int, geometry: tuple[int, int, int]) -> None:
        height, width, channels = geometry
        self.images = np.zeros((count, channels, height, width), dtype=np.uint8)
        self.decoded = np.zeros(count, dtype=bool)
        self.errors = np.full(count, "", dtype=object)
        self.formats = np.full(count, None, dtype=object)
        self.widths = np.zeros(count, dtype=np.int64)
        self.heights = np.zeros(count, dtype=np.int64)
        self.modes = np.full(count, None, dtype=object)
        self.brightness = np.zeros(count, dtype=np.float64)
        self.contrast = np.zeros(count, dtype=np.float64)

    def set(self, index: int, array: np.ndarray | None, stats: dict) -> None:
        """Store one `decode_file` result (or a reused one) at `index`."""
        self.errors[index] = stats["error"]
        if array is None:
            return
        self.images[index] = array
        self.decoded[index] = True
        self.widths[index], self.heights[index] = stats["width"], stats["height"]
        self.formats[index], self.modes[index] = stats["format"], stats["mode"]
        self.brightness[index], self.contrast[index] = stats["brightness"], stats["contrast"]

    def assign(self, indices: np.ndarray, other: DecodedColumns) -> None:
        """Copy all of `other` into the rows `indices` (in order)."""
        for name in _DECODED_FIELDS:
            getattr(self, name)[indices] = getattr(other, name)

    def statistics(self) -> dict[str, list]:
        """The statistics columns exactly as per-file dicts would give them: None where a file did not decode."""
        missing = ~self.decoded

        def column(values: np.ndarray) -> list:
            values = values.astype(object)
            values[missing] = None
            return values.tolist()

        return {
            "error": self.errors.tolist(),
            "format": self.formats.tolist(),
            "width": column(self.widths),
            "height": column(self.heights),
            "mode": self.modes.tolist(),
            "brightness": column(self.brightness),
            "contrast": column(self.contrast),
        }


_DECODED_FIELDS = ("images", "decoded", "errors", "formats", "widths", "heights", "modes", "brightness", "contrast")


def _decode_chunk(task: tuple[list[str], tuple[int, int, int], ImagePolicy]) -> DecodedColumns:
    paths, geometry, policy = task
    columns = DecodedColumns(len(paths), geometry)
    for index, path in enumerate(paths):
        columns.set(index, *decode_file(path, geometry, policy))
    return columns


def _read_header_chunk(task: tuple[list[str], ImagePolicy]) -> list[ImageHeader | str]:
    paths, policy = task
    return [read_header(path, policy) for path in paths]


def _pool_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux: a forked worker starts in milliseconds with numpy, Pillow and this module already imported,
    where "spawn" and "forkserver" (Python 3.14's Linux default) re-import them, pandas included, in every
    worker (about 1.3 s per pool on two cores)."""
    if sys.platform != "linux":
        return multiprocessing.get_context()
    # Pillow imports its format plug-ins on first use; doing it before the fork means a worker never needs the
    # import lock, which another thread of the parent (e.g. in a Dagster run) might hold at that instant.
    Image.init()
    return multiprocessing.get_context("fork")


class _FileMapper:
    """Runs per-file work over lists of paths: in this process for few files, otherwise in chunks on one
    process pool that is started at most once and shared by the header and decode passes."""

    def __init__(self, workers: int | None, threshold: int, progress: Progress | None = None) -> None:
        self._workers = workers or os.cpu_count() or 1
        self._threshold = threshold
        self._pool: ProcessPoolExecutor | None = None
        self._progress = progress

    def __enter__(self) -> _FileMapper:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def chunks(self, items: list) -> list[list]:
        """`items` in one chunk (single process) or in a few per worker: big enough that per-task costs vanish,
        small enough that a worker slowed by other load on its core does not hold up the end."""
        if len(items) < self._threshold or self._workers <= 1:
            return [items] if items else []
        size = min(_MAX_CHUNK, -(-len(items) // (self._workers * 4)))
        return [items[start : start + size] for start in range(0, len(items), size)]

    def map(self, function, tasks: list, what: str = "files") -> list:
        """`function` over `tasks` (each a chunk: its first item the chunk's paths), in order; with a progress
        callback, says how many of the files are done about every tenth of them (`what` names the work)."""
        if len(tasks) <= 1:
            return [function(task) for task in tasks]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self._workers, mp_context=_pool_context())
        total = sum(len(task[0]) for task in tasks)
        done, reported, results = 0, 0, []
        for task, result in zip(tasks, self._pool.map(function, tasks), strict=True):
            results.append(result)
            done += len(task[0])
            if self._progress is not None and (done - reported >= total / 10 or done == total):
                self._progress(f"{what}: {done:,} of {total:,} files ({done / total:.0%})")
                reported = done
        return results


class DecodedCache:
    """What a previous build learnt per content hash: headers (any policy), and decoded arrays and statistics, which
    are reused only for the same target geometry and the same image policy."""

    def __init__(self, previous: ValidatedDataset | None, policy: ImagePolicy) -> None:
        self._geometry: tuple[int, int, int] | None = None
        self._same_policy = False
        self._rows: dict[str, dict] = {}
        self._array_index: dict[str, int] = {}
        self._images: np.ndarray | None = None
        if previous is None or not (Path(previous.directory) / "stats.csv").exists() or not previous.image_policy:
            return  # nothing to reuse, or a build from before the image policy was recorded
        spec = previous.image_spec
        self._geometry = (spec.height, spec.width, spec.channels)
        self._same_policy = previous.policy == policy
        stats = previous.statistics()
        kept = stats["quarantine_reason"] == ""
        self._images = np.load(Path(previous.directory) / "images.npy", mmap_mode="r")
        for position, (_, row) in enumerate(stats[kept].iterrows()):
            self._array_index[row["sha256"]] = position
        # Only files that decoded are reused; the few that were refused are simply read again.
        for _, row in stats[stats["error"] == ""].iterrows():
            self._rows[row["sha256"]] = {
                "error": "",
                "format": str(row["format"]),
                "width": int(float(row["width"])),
                "height": int(float(row["height"])),
                "mode": str(row["mode"]),
                "brightness": float(row["brightness"]),
                "contrast": float(row["contrast"]),
            }

    def header(self, sha256: str) -> ImageHeader | None:
        """The displayed header recorded for this content, exactly as `ImagePolicy.header` reads it, or None."""
        row = self._rows.get(sha256)
        return ImageHeader(row["format"], row["mode"], row["width"], row["height"]) if row else None

    def decoded(self, sha256: str, geometry: tuple[int, int, int]) -> tuple[np.ndarray | None, dict] | None:
        """The stored decode result for this content at this geometry, or None when it must be decoded."""
        if not self._same_policy or geometry != self._geometry:
            return None
        if sha256 not in self._rows or sha256 not in self._array_index:
            return None
        return np.array(self._images[self._array_index[sha256]]), dict(self._rows[sha256])


def _headers(
    mapper: _FileMapper, cache: DecodedCache, manifest: DatasetManifest, paths: list[str], policy: ImagePolicy
) -> list[ImageHeader | str]:
    """Per entry, its displayed header if the image policy accepts it, else the reason; known content is not read
    again, only checked against the policy."""
    headers: list[ImageHeader | str | None] = []
    for entry in manifest.entries:
        header: ImageHeader | str | None = cache.header(entry.sha256)
        if isinstance(header, ImageHeader):
            try:
                policy.check(header, entry.size)
            except InvalidImageError as error:
                header = str(error)
        headers.append(header)
    unknown = [index for index, header in enumerate(headers) if header is None]
    chunks = mapper.chunks([paths[index] for index in unknown])
    tasks = [(chunk, policy) for chunk in chunks]
    read = [header for chunk in mapper.map(_read_header_chunk, tasks, "reading image headers") for header in chunk]
    for index, header in zip(unknown, read, strict=True):
        headers[index] = header
    return headers


def _examples(paths: list[str], reasons: list[str], limit: int = 3) -> str:
    return "; ".join(f"{path}: {reason}" for path, reason in list(zip(paths, reasons, strict=True))[:limit])


def _input_geometry(
    headers: list[ImageHeader | str], geometry: GeometryConfig, manifest: DatasetManifest, profile: ExpectationProfile
) -> tuple[int, int, int]:
    """(height, width, channels) of the model input: configured, or inferred from the displayed size of the files
    the image policy accepts. Raises DatasetError, naming examples, when it accepts none."""
    usable = [header for header in headers if isinstance(header, ImageHeader)]
    if not usable:
        refused = [index for index, header in enumerate(headers) if isinstance(header, str)]
        examples = _examples([manifest.entries[i].path for i in refused], [str(headers[i]) for i in refused])
        raise DatasetError(
            f"None of the {len(headers)} image files under {manifest.root} is accepted by the image policy of "
            f"profile {profile.name!r}; convert or replace those files, or widen the profile's image_policy "
            f"settings. Examples: {examples}"
        )
    height, width, channels = infer_geometry(
        [(header.width, header.height) for header in usable], [header.mode for header in usable], geometry.max_side
    )
    return geometry.height or height, geometry.width or width, geometry.channels or channels


def _decode_into(
    columns: DecodedColumns,
    indices: list[int],
    paths: list[str],
    geometry: tuple[int, int, int],
    policy: ImagePolicy,
    mapper: _FileMapper,
) -> None:
    """Decode the files at `indices` at `geometry` (height, width, channels) into those rows of `columns`."""
    chunks = mapper.chunks(indices)
    tasks = [([paths[index] for index in chunk], geometry, policy) for chunk in chunks]
    results = mapper.map(_decode_chunk, tasks, "decoding images")
    for chunk, result in zip(chunks, results, strict=True):
        columns.assign(np.asarray(chunk, dtype=np.int64), result)


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
    parallel_threshold: int = PARALLEL_THRESHOLD,
    files_root: Path | None = None,
    progress: Progress | None = None,
) -> ValidatedDataset:
    """Decode every manifest entry once through the profile's image policy, quarantine files it refuses or that
    fail the per-file quality expectations, run the dataset expectations, and write arrays, statistics, quarantine
    report, baseline and Data Docs atomically. Raises DatasetError, naming example files, when no file is usable.

    With `previous` (an earlier build), headers are reused by content hash, and decoded arrays too when the geometry
    and the policy are the same, so adding one image decodes one image. From `parallel_threshold` files to read or
    decode on, `workers` processes (default: one per core) do it; the result is identical either way. Files are read
    below `files_root` (default: the manifest's root; a local copy where the dataset lies in object storage).
    `progress` is told, one line at a time, how far the long passes are (a large dataset takes minutes).
    """
    profile = profile or ExpectationProfile()
    policy = profile.image_policy()
    cache = DecodedCache(previous, policy)
    root = Path(files_root if files_root is not None else manifest.root)
    paths = [str(root / entry.path) for entry in manifest.entries]
    say = progress or (lambda _message: None)
    with _FileMapper(workers, parallel_threshold, progress) as mapper:
        headers = _headers(mapper, cache, manifest, paths, policy)
        geometry_key = _input_geometry(headers, geometry, manifest, profile)
        columns = DecodedColumns(len(paths), geometry_key)
        to_decode = []
        for index, entry in enumerate(manifest.entries):
            reused = cache.decoded(entry.sha256, geometry_key)
            if reused is None:
                to_decode.append(index)
            else:
                columns.set(index, *reused)
        say(f"{len(paths) - len(to_decode):,} images reused by content hash, {len(to_decode):,} to decode")
        _decode_into(columns, to_decode, paths, geometry_key, policy, mapper)
    height, width, channels = geometry_key

    entries = manifest.entries
    stats = pd.DataFrame(
        {
            "path": [entry.path for entry in entries],
            "label": [entry.label for entry in entries],
            "split": [entry.split for entry in entries],
            "sha256": [entry.sha256 for entry in entries],
            "size_bytes": [entry.size for entry in entries],
            **columns.statistics(),
        }
    )
    skipped = pd.DataFrame([s.__dict__ for s in manifest.skipped], columns=["path", "label", "reason"])

    with atomic_directory(destination) as staging:
        session = GxSession(staging / "data_docs")
        say(f"Running the per-file expectations of profile {profile.name!r} on {len(stats):,} images")
        stats["quarantine_reason"] = quarantine_reasons(session, stats, profile)
        kept = (stats["quarantine_reason"] == "").to_numpy()
        labels = manifest.labels
        label_index = {label: index for index, label in enumerate(labels)}
        images = columns.images[kept]
        splits = np.asarray([SPLIT_CODES[split] for split in stats["split"][kept]], dtype=np.uint8)
        label_codes = np.asarray([label_index[label] for label in stats["label"][kept]], dtype=np.int64)
        train_images = images[splits == SPLIT_CODES["train"]]
        if len(train_images) == 0:
            refused = stats[~kept]
            examples = _examples(list(refused["path"]), list(refused["quarantine_reason"]))
            raise DatasetError(
                f"The training split of {manifest.root} is empty after quarantine ({len(refused)} of {len(kept)} "
                "image files quarantined); fix or replace those files, or add more images (about 70% of files, "
                f"chosen by content hash, go to training). Examples: {examples}"
            )
        mean, std = channel_statistics(train_images)
        spec = ImageSpec(height, width, channels, mean, std)
        split_counts = {name: int((splits == code).sum()) for name, code in SPLIT_CODES.items()}
        say("Running the dataset expectations")
        outcomes = run_dataset_suites(
            session, stats, skipped, profile, expected_labels, labels_source, manifest.label_folders
        )
        say("Building the Data Docs")
        session.build_docs()

        np.save(staging / "images.npy", images)
        np.save(staging / "labels.npy", label_codes)
        np.save(staging / "splits.npy", splits)
        stats.to_csv(staging / "stats.csv", index=False)
        report = pd.concat(
            [
                stats.loc[~kept, ["path", "label", "quarantine_reason"]]
                .rename(columns={"quarantine_reason": "reason"})
                .assign(status="quarantined"),
                skipped.assign(status="skipped"),
            ],
            ignore_index=True,
        )
        report[["path", "label", "reason", "status"]].to_csv(staging / QUARANTINE_FILE, index=False)
        train_rows = stats[kept & (stats["split"] == "train").to_numpy()]
        (staging / BASELINE_FILE).write_text(json.dumps(baseline_statistics(train_rows), indent=1))
        (staging / "validation.json").write_text(
            json.dumps(
                {
                    "profile": profile.to_dict(),
                    "image_policy": policy.to_dict(),
                    "outcomes": [outcome.to_dict() for outcome in outcomes],
                },
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
                    "num_quarantined": int((~kept).sum()),
                    "num_skipped": len(skipped),
                    "image_policy": policy.to_dict(),
                    "dataset_root": manifest.root,
                    "version": version,
                    "num_decoded_now": len(to_decode),
                },
                indent=1,
            )
        )
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
        num_skipped=document.get("num_skipped", 0),
        image_policy=document.get("image_policy"),
    )
