"""The hard-case loop: low-confidence inputs the service kept (capture.py) exported for review in the dataset layout,
and, once a person filed them under their true labels, copied into the dataset's folder so the next data version
holds them (a configured share in the test split: `splits.assign_split`)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mlops_assets.lib.data.image_policy import ImagePolicy, read_header
from mlops_assets.lib.data.splits import HARD_CASE_PREFIX, HARD_CASE_TEST_PREFIX, hard_case_in_test
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.monitoring.capture import HARD_CASES, REQUEST_ID
from mlops_assets.lib.serving.prediction_store import PredictionStore, stage_names, substore

_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp"}


class HardCaseError(MLOpsError):
    """Reviewed hard cases that cannot join the dataset (an unknown label, a dataset that is not a folder)."""


# In the review folder: one line per exported case (`<sha256 of its bytes> <file name>`), so a case a reviewer
# deleted is not exported again and identical inputs become one file.
LEDGER = ".exported"


@dataclass
class ExportResult:
    """What `export_hard_cases` wrote: files per suggested label, distinct cases exported before (the ledger, or a
    file of the same name), duplicates (records with the same bytes as another case of this export, whether written
    now or exported before), records it could not use."""

    destination: Path
    written: dict[str, int] = field(default_factory=dict)
    already_there: int = 0
    duplicates: int = 0
    unusable: list[str] = field(default_factory=list)
    in_test: int = 0
    # The content hashes this export wrote or found exported before: a second case with the same bytes is a duplicate,
    # so `already_there` counts distinct cases (files), not the records repeating them.
    digests: set[str] = field(default_factory=set, repr=False)

    @property
    def total(self) -> int:
        return sum(self.written.values())


def hard_case_name(request_id: str, index: int, data: bytes, extension: str, test_share: float) -> str:
    """`hardcase-test-<request>-<index><ext>` for a case of the test split, else `hardcase-<request>-<index><ext>`."""
    in_test = hard_case_in_test(hashlib.sha256(data).hexdigest(), test_share)
    return f"{HARD_CASE_TEST_PREFIX if in_test else HARD_CASE_PREFIX}{request_id}-{index}{extension}"


def _ledger(destination: Path) -> set[str]:
    """The content hashes exported to `destination` before."""
    path = destination / LEDGER
    if not path.is_file():
        return set()
    return {line.split(" ", 1)[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()}


def export_hard_cases(
    store: PredictionStore, destination: Path, test_share: float, stage: str | None = None
) -> ExportResult:
    """Every kept hard case of `store` (the prediction store) from the servers of deployment `stage` (None: every
    stage) written to `destination/<predicted label>/` (the prediction as a suggestion, the confidence in no name: a
    reviewer moves each file to its true label's folder, or deletes it). Each export is remembered in
    `destination/.exported` by content hash, so exporting again adds only new cases (never one a reviewer deleted),
    and identical inputs become one file."""
    result = ExportResult(destination)
    exported = _ledger(destination)
    cases = substore(store, HARD_CASES)
    for name in stage_names(cases, stage):
        for number, record in enumerate(cases.read(name), start=1):
            where = f"{name} record {number}"
            try:
                data = base64.b64decode(record["image"], validate=True)
                label, request_id, index = str(record["label"]), str(record["request_id"]), record["index"]
                if isinstance(index, bool) or not isinstance(index, int) or index < 0:
                    raise ValueError(f"index = {index!r} is not an integer >= 0")
                if not REQUEST_ID.match(request_id):
                    raise ValueError(f"request_id = {request_id[:40]!r} is not a request id")
                with Image.open(io.BytesIO(data)) as image:
                    extension = _EXTENSIONS.get(image.format or "", ".img")
            except (KeyError, TypeError, ValueError, binascii.Error, UnidentifiedImageError) as error:
                result.unusable.append(f"{where}: {type(error).__name__}: {error}")
                continue
            if not label or "/" in label or label.startswith("."):
                result.unusable.append(f"{where}: label {label!r} cannot be a folder name")
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in result.digests:
                # The same bytes as a case this export already counted (written, or exported before).
                result.duplicates += 1
                continue
            result.digests.add(digest)
            if digest in exported:
                # Exported before (perhaps moved to its true label, or deleted, since).
                result.already_there += 1
                continue
            file_name = hard_case_name(request_id, index, data, extension, test_share)
            if any(destination.glob(f"*/{file_name}")):
                # Exported before the ledger was kept: remembered now.
                result.already_there += 1
                _remember(destination, digest, file_name, exported)
                continue
            target = destination / label / file_name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            _remember(destination, digest, file_name, exported)
            result.written[label] = result.written.get(label, 0) + 1
            result.in_test += file_name.startswith(HARD_CASE_TEST_PREFIX)
    return result


def _remember(destination: Path, digest: str, file_name: str, exported: set[str]) -> None:
    """Add one exported case to the ledger (appended at once: an export cut short still remembers what it wrote)."""
    destination.mkdir(parents=True, exist_ok=True)
    with (destination / LEDGER).open("a", encoding="utf-8") as ledger:
        ledger.write(f"{digest} {file_name}\n")
    exported.add(digest)


@dataclass
class IngestResult:
    """What `ingest_reviewed` copied into the dataset, per label, what was there already, and what in the review
    folder it skipped (not a reviewed hard case), with why."""

    dataset: Path
    copied: dict[str, int] = field(default_factory=dict)
    already_there: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.copied.values())


def _review_files(review: Path) -> tuple[list[Path], list[str]]:
    """The reviewed hard cases (`review/<label>/hardcase-*`), and every other file of the review folder, named with
    why it is skipped (the export's ledger and hidden files are left alone silently)."""
    reviewed, skipped = [], []
    for path in sorted(review.rglob("*")):
        relative = path.relative_to(review)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if len(relative.parts) == 1:
            skipped.append(f"{relative}: not in a label's folder")
        elif len(relative.parts) > 2:
            skipped.append(f"{relative}: nested below a label's folder (files go directly in review/<label>/)")
        elif not path.name.startswith(HARD_CASE_PREFIX):
            skipped.append(f"{relative}: not an exported hard case (its name does not start with {HARD_CASE_PREFIX})")
        else:
            reviewed.append(path)
    return reviewed, skipped


def ingest_reviewed(review: Path, dataset: Path) -> IngestResult:
    """Copy the reviewed hard cases (`review/<true label>/hardcase-*`) into the dataset folder `dataset` under the
    same label folders; other files of the review folder are skipped and named in `skipped`. Raises HardCaseError,
    copying nothing, when a label folder of the review is not a label of the dataset (a misspelt folder must not
    become a class) or a reviewed file is not an image the dataset would accept (the image policy's checks)."""
    if not dataset.is_dir():
        raise HardCaseError(f"The dataset folder {dataset} does not exist; name the folder the dataset reads.")
    if not review.is_dir():
        raise HardCaseError(f"The review folder {review} does not exist; export with `mlops hardcases export`.")
    labels = {path.name for path in dataset.iterdir() if path.is_dir() and not path.name.startswith(".")}
    reviewed, skipped = _review_files(review)
    unknown = sorted({path.parent.name for path in reviewed} - labels)
    if unknown:
        raise HardCaseError(
            f"Review folder(s) {', '.join(unknown)} in {review} are not labels of the dataset {dataset} (labels: "
            f"{', '.join(sorted(labels))}); move those files to a label's folder, or delete them, and ingest again."
        )
    policy = ImagePolicy()
    refused = [
        f"{path.relative_to(review)}: {problem.rstrip('.')}"
        for path in reviewed
        if isinstance(problem := read_header(path, policy), str)
    ]
    if refused:
        listed = "; ".join(refused[:5]) + (f"; and {len(refused) - 5} more" if len(refused) > 5 else "")
        raise HardCaseError(
            f"{len(refused)} reviewed file(s) in {review} are not usable images, nothing copied: {listed}. Delete "
            "them (or replace them with the exported images) and ingest again."
        )
    result = IngestResult(dataset, skipped=skipped)
    for path in reviewed:
        target = dataset / path.parent.name / path.name
        if target.exists():
            result.already_there += 1
            continue
        shutil.copyfile(path, target)
        result.copied[path.parent.name] = result.copied.get(path.parent.name, 0) + 1
    return result
