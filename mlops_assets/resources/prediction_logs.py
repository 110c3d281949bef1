"""Where the service's prediction logs go and how monitoring reads them: one interface, files under MLOPS_HOME here
and GCS below the environment's storage URL (`<url>/predictions/`).

The service itself is no Dagster code: it learns the place from the variable `server_environment()` gives whoever
starts it (lib/serving/prediction_store.py), and writes and uploads through the library.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

import dagster as dg
from dagster_gcp import GCSResource

from mlops_assets import settings
from mlops_assets.lib.serving.prediction_store import (
    PREDICTIONS_VARIABLE,
    STAGE_VARIABLE,
    FolderPredictionStore,
    GcsPredictionStore,
    PredictionStore,
)
from mlops_assets.lib.storage.gcs import GcsLocation, location_problem, parse_gcs_url

PREDICTIONS_PREFIX = "predictions"


class PredictionLogs(dg.ConfigurableResource):
    """The environment's prediction logs: what a server is told, and the published files for readers."""

    @abstractmethod
    def where(self) -> str:
        """The folder or gs:// URL the logs are kept in."""

    @abstractmethod
    def store(self) -> PredictionStore:
        """The logs as a store: `names()` and `read(name)` give what servers published (prediction_store.records)."""

    def server_environment(self, stage: str | None = None) -> dict[str, str]:
        """The variables a server of this environment is started with, so it logs here, under its deployment `stage`
        (None: a server outside a stage; the variable is then set empty, so one inherited from the caller's
        environment cannot give it a stage)."""
        return {PREDICTIONS_VARIABLE: self.where(), STAGE_VARIABLE: stage or ""}

    @abstractmethod
    def is_local(self) -> bool:
        """Whether the logs are kept in a folder of this machine (which a server elsewhere cannot write to)."""

    @abstractmethod
    def problem(self) -> str:
        """Why the logs cannot be kept there ('' when they can), checked before a server starts."""


class LocalPredictionLogs(PredictionLogs):
    """JSON-lines files under MLOPS_HOME/predictions (or `root`), one per day and server process."""

    root: str = ""

    def where(self) -> str:
        return str(Path(self.root).expanduser().resolve() if self.root else settings.mlops_home() / "predictions")

    def store(self) -> FolderPredictionStore:
        return FolderPredictionStore(Path(self.where()))

    def is_local(self) -> bool:
        return True

    def problem(self) -> str:
        path = Path(self.where())
        existing = next((found for found in (path, *path.parents) if found.exists()), None)
        return f"{existing} is a file, not a folder" if existing is not None and not existing.is_dir() else ""


class GcsPredictionLogs(PredictionLogs):
    """Files uploaded below `url`/predictions (gs://bucket/prefix) once each is closed (every few minutes)."""

    url: str
    gcs: GCSResource

    def location(self) -> GcsLocation:
        return parse_gcs_url(self.url).child(PREDICTIONS_PREFIX)

    def where(self) -> str:
        return str(self.location())

    def is_local(self) -> bool:
        return False

    def store(self) -> GcsPredictionStore:
        # A reader needs no spool; a writer (the service) makes its own under its MLOPS_HOME/cache.
        spool = settings.mlops_home() / "cache" / "predictions" / "reader"
        return GcsPredictionStore(self.location(), spool, client=self.gcs.get_client())

    def problem(self) -> str:
        try:
            location = self.location()
        except ValueError as error:
            return str(error)
        return location_problem(self.gcs.get_client(), location, must_hold_objects=False)
