"""Stored artifacts (validated arrays, model packages, evaluation reports, remembered label sets): directories keyed
by kind and version. One interface; a directory implementation here and a GCS one in gcs_artifacts.py.

Assets do the heavy work on local paths either way: `publishing` gives the local directory to write (it must appear
whole: the library writers use lib/atomic.py) and publishes it when the block succeeds; `fetch`/`open` give a
published artifact as a local directory.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol, TypeVar

import dagster as dg

from mlops_assets import settings
from mlops_assets.lib.errors import MLOpsError


class ArtifactMissingError(MLOpsError, FileNotFoundError):
    """An artifact a step reads was never published (or was deleted); the message names the asset to rematerialize."""


class _Stored(Protocol):
    directory: str
    version: str


Stored = TypeVar("Stored", bound=_Stored)


class ArtifactStore(dg.ConfigurableResource):
    """Directories keyed by (kind, key): `kind` is the asset that writes them, `key` its content-derived version."""

    @abstractmethod
    def uri(self, kind: str, key: str) -> str:
        """Where the artifact lives for good (a path or a gs:// URL), for metadata, the registry and messages."""

    @abstractmethod
    def fetch(self, kind: str, key: str) -> Path | None:
        """The published artifact as a local directory (copied to the local cache when missing there); None when
        it was never published."""

    @abstractmethod
    @contextmanager
    def publishing(self, kind: str, key: str) -> Iterator[Path]:
        """The local path where the caller creates the artifact's directory; published when the block succeeds."""

    @abstractmethod
    def problem(self) -> str:
        """Why the store cannot be used ('' when it can), checked before a run starts."""

    def open(self, kind: str, key: str) -> Path:
        """The published artifact as a local directory; raises ArtifactMissingError naming what to rematerialize."""
        found = self.fetch(kind, key)
        if found is None:
            raise ArtifactMissingError(
                f"{kind} version {key[:16]} is not in the artifact store ({self.uri(kind, key)}); rematerialize {kind}."
            )
        return found

    def local_copy(self, stored: Stored, kind: str) -> Stored:
        """`stored` (a reference with `directory` and `version`) with `directory` a local copy of its artifact: a
        step may run on another machine, or after a cache was cleared, than the one that wrote it."""
        local = self.open(kind, stored.version)
        return stored if Path(stored.directory) == local else dataclasses.replace(stored, directory=str(local))


class LocalArtifactStore(ArtifactStore):
    """Directories under MLOPS_HOME/artifacts (or `root`): written there, published where they are."""

    root: str = ""

    def base(self) -> Path:
        return Path(self.root).expanduser().resolve() if self.root else settings.artifacts_dir()

    def path_for(self, kind: str, key: str) -> Path:
        return self.base() / kind / key

    def uri(self, kind: str, key: str) -> str:
        return str(self.path_for(kind, key))

    def fetch(self, kind: str, key: str) -> Path | None:
        path = self.path_for(kind, key)
        return path if path.is_dir() else None

    @contextmanager
    def publishing(self, kind: str, key: str) -> Iterator[Path]:
        yield self.path_for(kind, key)

    def problem(self) -> str:
        base = self.base()
        existing = next((path for path in (base, *base.parents) if path.exists()), None)
        if existing is not None and not existing.is_dir():
            return f"{existing} is a file, not a folder"
        return ""
