"""Google Cloud Storage: `gs://bucket/prefix` locations, clients, and directories published whole.

A directory is published by uploading its files, then a marker object listing them (`_published.json`), last: a
reader that finds the marker finds every file it lists, and an upload cut short leaves no marker, so it is never
mistaken for a result. Transfers run on google-cloud-storage's transfer manager (threads, checksums verified).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_assets.lib.atomic import atomic_directory
from mlops_assets.lib.errors import MLOpsError

if TYPE_CHECKING:
    from google.cloud import storage

SCHEME = "gs://"
MARKER = "_published.json"
# Parallel transfers per directory: GCS serves objects independently; a few threads hide the per-request latency.
TRANSFER_THREADS = 8
# Bucket names: lowercase letters, digits, '-', '_' and '.', 3 to 222 characters, alphanumeric at both ends.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")


class GcsError(MLOpsError):
    """An object or bucket cannot be used as expected; the message names it and what to do."""


@dataclass(frozen=True)
class GcsLocation:
    """A bucket and an object-name prefix without leading or trailing '/' ('' is the whole bucket)."""

    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"

    def key(self, *parts: str) -> str:
        """The object name of `parts` below the prefix."""
        return "/".join(part.strip("/") for part in (self.prefix, *parts) if part.strip("/"))

    def child(self, *parts: str) -> GcsLocation:
        return GcsLocation(self.bucket, self.key(*parts))


def is_gcs_url(text: str) -> bool:
    return str(text).startswith(SCHEME)


def parse_gcs_url(text: str) -> GcsLocation:
    """`gs://bucket[/prefix]` as a location; raises ValueError saying what a valid URL looks like."""
    text = str(text)
    if not is_gcs_url(text):
        raise ValueError(f"{text!r} is not a gs://bucket/prefix URL")
    bucket, _, prefix = text[len(SCHEME) :].partition("/")
    if not _BUCKET.match(bucket):
        raise ValueError(
            f"{text!r} does not start with a bucket name (gs://bucket/prefix; a bucket name has 3 to 222 lowercase "
            "letters, digits, '-', '_' or '.', alphanumeric at both ends)"
        )
    parts = [part for part in prefix.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise ValueError(f"{text!r} has a '.' or '..' segment; write the prefix out in full")
    return GcsLocation(bucket, "/".join(parts))


def storage_client(project: str | None = None) -> storage.Client:
    """A google-cloud-storage client: application default credentials, or anonymous when STORAGE_EMULATOR_HOST
    points at an emulator (the library's own rule)."""
    from google.cloud import storage

    return storage.Client(project=project or None)


def location_problem(client: storage.Client, location: GcsLocation, must_hold_objects: bool) -> str:
    """Why `location` cannot be used ('' when it can): a bucket that does not exist or that these credentials may
    not read, or (with `must_hold_objects`) no object under the prefix."""
    from google.api_core import exceptions

    try:
        if not client.bucket(location.bucket).exists():
            return f"bucket {location.bucket!r} does not exist; create it or correct the URL"
        if must_hold_objects:
            prefix = f"{location.prefix}/" if location.prefix else ""
            if not any(True for _ in client.list_blobs(location.bucket, prefix=prefix, max_results=1)):
                return f"no object under {location}; upload the files there or correct the URL"
    except exceptions.Forbidden as error:
        return f"these credentials may not read bucket {location.bucket!r} ({error.message}); grant them access"
    except exceptions.GoogleAPICallError as error:
        return f"GCS answered {error.code} for bucket {location.bucket!r}: {error.message}"
    except OSError as error:  # no route, refused connection, DNS: the request never got an answer
        return f"GCS cannot be reached ({error}); check the network and STORAGE_EMULATOR_HOST"
    return ""


def published_files(client: storage.Client, location: GcsLocation) -> dict[str, int] | None:
    """The files (relative path -> size in bytes) of the directory published at `location`; None if none is."""
    blob = client.bucket(location.bucket).blob(location.key(MARKER))
    from google.api_core import exceptions

    try:
        document = json.loads(blob.download_as_bytes())
    except exceptions.NotFound:
        return None
    return {str(name): int(size) for name, size in document["files"].items()}


def upload_directory(client: storage.Client, directory: Path, location: GcsLocation) -> int:
    """Upload every file under `directory` to `location` (same relative names), then the marker; returns the number
    of files. Raises GcsError naming the directory when it does not exist."""
    from google.cloud.storage import transfer_manager

    if not directory.is_dir():
        raise GcsError(f"{directory} does not exist, so nothing can be published to {location}.")
    files = sorted(path for path in directory.rglob("*") if path.is_file())
    names = [path.relative_to(directory).as_posix() for path in files]
    bucket = client.bucket(location.bucket)
    transfer_manager.upload_many_from_filenames(
        bucket,
        names,
        source_directory=str(directory),
        blob_name_prefix=f"{location.prefix}/" if location.prefix else "",
        worker_type=transfer_manager.THREAD,
        max_workers=TRANSFER_THREADS,
        raise_exception=True,
    )
    marker = {
        "files": {name: path.stat().st_size for name, path in zip(names, files, strict=True)},
        "published_at": datetime.now(UTC).isoformat(),
    }
    bucket.blob(location.key(MARKER)).upload_from_string(json.dumps(marker, indent=1), content_type="application/json")
    return len(files)


def download_directory(client: storage.Client, location: GcsLocation, destination: Path) -> Path:
    """Download the directory published at `location` to `destination`, which appears whole (or not at all).

    Raises GcsError when nothing is published there, or when an object differs from its listed size.
    """
    from google.cloud.storage import transfer_manager

    files = published_files(client, location)
    if files is None:
        raise GcsError(f"Nothing is published at {location} (no {MARKER}); rematerialize the asset that writes it.")
    names = sorted(files)
    with atomic_directory(destination) as staging:
        transfer_manager.download_many_to_path(
            client.bucket(location.bucket),
            names,
            destination_directory=str(staging),
            blob_name_prefix=f"{location.prefix}/" if location.prefix else "",
            worker_type=transfer_manager.THREAD,
            max_workers=TRANSFER_THREADS,
            raise_exception=True,
            create_directories=True,
        )
        for name in names:
            size = (staging / name).stat().st_size
            if size != files[name]:
                raise GcsError(
                    f"{location.child(name)} holds {size} bytes, not the {files[name]} its {MARKER} lists; it was "
                    "changed after it was published. Rematerialize the asset that writes it."
                )
    return destination
