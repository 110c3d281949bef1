"""Where prediction logs go and how they are read back: one interface, a folder and a GCS implementation.

The service's writer (prediction_log.PredictionLog) appends JSON lines to a file in the store's `spool` folder and
hands each file to `publish` once it is closed. In a folder the spool is the log itself and publishing leaves the
file where it is. On GCS the spool is a local buffer (under MLOPS_HOME/cache) and a closed file is uploaded as one
object, then removed locally, so a reader never sees half a file. Readers (monitoring) list and read what is
published through the same interface, wherever it is.

The service learns where to log from the environment variable PREDICTIONS_VARIABLE (a folder or gs://bucket/prefix;
unset: MLOPS_HOME/predictions), which whoever starts the server sets from the environment's `storage:` settings, and
which deployment stage it serves from STAGE_VARIABLE (`staging`, `production`; unset: UNSTAGED, a server started
outside a deployment stage). A file's name says its stage, `<date>[T<time>Z].<stage>.<pid>.jsonl`, so a reader lists
one stage's files without reading the others; files written before stages were logged, `<date>[T<time>Z].<pid>.jsonl`,
are the unstaged ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mlops_assets.lib.deploy.stage_settings import STAGES
from mlops_assets.lib.storage.gcs import GcsLocation, is_gcs_url, parse_gcs_url, storage_client

if TYPE_CHECKING:
    from google.cloud import storage

PREDICTIONS_VARIABLE = "MLOPS_PREDICTIONS_URL"
# Set by the deployers on the servers of a deployment stage: which stage's traffic the server logs.
STAGE_VARIABLE = "MLOPS_DEPLOYMENT_STAGE"
# The stage of a server started outside a deployment stage (`mlops serve`, `mlops deploy local`, a test's server),
# and of records logged before stages were.
UNSTAGED = "unstaged"
# Every stage a record can belong to, in the order they are reported.
LOG_STAGES = (*STAGES, UNSTAGED)
SUFFIX = ".jsonl"
# Seconds a log file stays open on GCS before it is closed and uploaded: how late records reach the bucket.
GCS_ROTATE_INTERVAL_S = 300.0
# `<date>[T<time>Z][.<stage>].<pid>.jsonl`: the writer's process id, so a leftover of a dead process can be told apart.
_WRITER_PID = re.compile(r"\.(\d+)\.jsonl$")
_FILE_STAGE = re.compile(r"\.([a-z]+)\.\d+\.jsonl$")


def stage_from_environment() -> str:
    """The stage STAGE_VARIABLE names (UNSTAGED when unset or empty); raises ValueError naming the variable and the
    stages for any other value, so a misconfigured server refuses to start rather than log under a wrong stage."""
    value = os.environ.get(STAGE_VARIABLE, "").strip()
    if not value:
        return UNSTAGED
    if value not in STAGES:
        raise ValueError(
            f"{STAGE_VARIABLE} = {value!r}: expected one of {', '.join(STAGES)} (set by the deployer), or unset for "
            "a server outside a deployment stage."
        )
    return value


def log_file_name(stamp: str, stage: str, pid: int) -> str:
    """The name of a writer's file: `<stamp>.<stage>.<pid>.jsonl`."""
    return f"{stamp}.{stage}.{pid}{SUFFIX}"


def file_stage(name: str) -> str:
    """The stage a log file's name says (UNSTAGED for a name without one: written before stages were logged)."""
    match = _FILE_STAGE.search(name)
    return match.group(1) if match is not None and match.group(1) in LOG_STAGES else UNSTAGED


def stage_names(store: PredictionStore, stage: str | None) -> list[str]:
    """The published files of `stage` (None: every stage), oldest first, chosen by name alone."""
    return [name for name in store.names() if stage is None or file_stage(name) == stage]


class PredictionStore(Protocol):
    """Where the writer appends (`spool`), when it closes a file (`rotate_interval_s`; None: once a day), what
    happens to a closed file (`publish`), and reading back what is published."""

    spool: Path
    rotate_interval_s: float | None

    def publish(self, path: Path) -> None:
        """Keep a closed log file for good. Raises OSError or a GCS error when it cannot be kept now (the writer
        keeps the file and tries again later)."""

    def leftovers(self) -> list[Path]:
        """Closed files left in the spool by writers that are gone (published at the next start)."""

    def names(self) -> list[str]:
        """The published log files, oldest first (names sort by the time they were opened)."""

    def read(self, name: str) -> list[dict]:
        """The records of one published file (a `LogRecords`); a last line cut short by a writer still appending is
        left out, and a complete line that is not JSON is skipped and its number kept in `bad_lines`."""


def records(store: PredictionStore) -> Iterator[dict]:
    """Every published record, oldest file first."""
    for name in store.names():
        yield from store.read(name)


class LogRecords(list):
    """The records of one log file (a list of dicts), and `bad_lines`: the 1-based numbers of complete lines that
    are not JSON (a damaged disk block, an edited file), skipped so the rest of the file still counts."""

    def __init__(self, records: list[dict], bad_lines: list[int], cut_line: int = 0) -> None:
        super().__init__(records)
        self.bad_lines = bad_lines
        # The 1-based number of a last line without its newline (left out; 0: none), and whether its writer is gone
        # (then the line will never be finished: a writer that died mid-line).
        self.cut_line = cut_line
        self.writer_gone = True


def _parse_lines(text: str) -> LogRecords:
    lines = text.split("\n")
    records, bad = [], []
    # Only complete lines: a writer appending right now may have written part of the last one.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError:
            bad.append(number)
    return LogRecords(records, bad, len(lines) if lines[-1].strip() else 0)


def _writer_gone(path: Path) -> bool:
    match = _WRITER_PID.search(path.name)
    if match is None:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class FolderPredictionStore:
    """Log files in a folder: written in place, one per day and process, never moved."""

    rotate_interval_s: float | None = None

    def __init__(self, directory: Path) -> None:
        self.spool = Path(directory)

    def __str__(self) -> str:
        return str(self.spool)

    def publish(self, path: Path) -> None:
        return None  # already where it is kept

    def leftovers(self) -> list[Path]:
        return []

    def names(self) -> list[str]:
        return sorted(path.name for path in self.spool.glob(f"*{SUFFIX}")) if self.spool.is_dir() else []

    def read(self, name: str) -> list[dict]:
        found = _parse_lines((self.spool / name).read_text(encoding="utf-8"))
        # Files here are written in place: a cut last line is only final once its writer is gone.
        found.writer_gone = _writer_gone(self.spool / name)
        return found


class GcsPredictionStore:
    """Log files uploaded below `location` (gs://bucket/prefix) once closed; open ones buffered in `spool`."""

    def __init__(
        self,
        location: GcsLocation,
        spool: Path,
        client: storage.Client | None = None,
        rotate_interval_s: float = GCS_ROTATE_INTERVAL_S,
    ) -> None:
        self.location = location
        self.spool = Path(spool)
        self.rotate_interval_s = rotate_interval_s
        self._client = client

    def __str__(self) -> str:
        return str(self.location)

    @property
    def client(self) -> storage.Client:
        # Created on first use, on the writer's thread: the service starts without waiting for credentials.
        if self._client is None:
            self._client = storage_client()
        return self._client

    def publish(self, path: Path) -> None:
        blob = self.client.bucket(self.location.bucket).blob(self.location.key(path.name))
        # One object, written whole; the local copy goes only once the upload succeeded.
        blob.upload_from_filename(str(path), content_type="application/x-ndjson")
        path.unlink()

    def leftovers(self) -> list[Path]:
        if not self.spool.is_dir():
            return []
        return sorted(path for path in self.spool.glob(f"*{SUFFIX}") if _writer_gone(path))

    def names(self) -> list[str]:
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        found = self.client.list_blobs(self.location.bucket, prefix=prefix)
        return sorted(
            blob.name[len(prefix) :]
            for blob in found
            if blob.name.endswith(SUFFIX) and "/" not in blob.name[len(prefix) :]
        )

    def read(self, name: str) -> list[dict]:
        blob = self.client.bucket(self.location.bucket).blob(self.location.key(name))
        return _parse_lines(blob.download_as_text(encoding="utf-8"))


def substore(store: PredictionStore, name: str) -> FolderPredictionStore | GcsPredictionStore:
    """The store of another kind of record beside the prediction log (feedback, hard cases): the sub-folder or
    sub-prefix `name`, which the log's own `names()` never lists."""
    if isinstance(store, GcsPredictionStore):
        return GcsPredictionStore(
            store.location.child(name),
            store.spool / name,
            client=store._client,
            rotate_interval_s=store.rotate_interval_s,
        )
    return FolderPredictionStore(store.spool / name)


def open_store(where: str | None, home: Path) -> FolderPredictionStore | GcsPredictionStore:
    """The store `where` names (a folder, or gs://bucket/prefix with its spool under `home`/cache); None or '':
    `home`/predictions. Raises ValueError naming PREDICTIONS_VARIABLE for a malformed gs:// URL."""
    if not where:
        return FolderPredictionStore(home / "predictions")
    if is_gcs_url(where):
        try:
            location = parse_gcs_url(where)
        except ValueError as error:
            raise ValueError(f"{PREDICTIONS_VARIABLE}: {error}") from None
        # One spool per destination, so two environments on one machine never upload each other's files.
        key = hashlib.sha256(str(location).encode()).hexdigest()[:12]
        return GcsPredictionStore(location, home / "cache" / "predictions" / key)
    return FolderPredictionStore(Path(where).expanduser())


def store_from_environment(home: Path) -> FolderPredictionStore | GcsPredictionStore:
    """The store named by PREDICTIONS_VARIABLE (see `open_store`)."""
    return open_store(os.environ.get(PREDICTIONS_VARIABLE), home)
