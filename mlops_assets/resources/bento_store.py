"""Where models and bentos are kept for good: one interface; the local BentoML store here, GCS below.

BentoML builds and serves from its local store (MLOPS_HOME/bentoml) in every environment. With GCS, that store is
only a cache: after the `bento` asset builds, the model and the bento are exported (BentoML's export API) to
`<url>/models/<name>-<version>.bentomodel` and `<url>/bentos/<name>-<version>.bento`, and whatever serves or
evaluates a version on another machine imports them back when its store lacks them.
"""

from __future__ import annotations

import tempfile
from abc import abstractmethod
from pathlib import Path

import dagster as dg
from dagster_gcp import GCSResource

from mlops_assets import settings
from mlops_assets.lib.errors import MLOpsError
from mlops_assets.lib.storage.gcs import GcsLocation, location_problem, parse_gcs_url

BENTOS_PREFIX = "bentos"
MODELS_PREFIX = "models"
_SUFFIX = {"bentos": ".bento", "models": ".bentomodel"}


class BentoNotFoundError(MLOpsError, FileNotFoundError):
    """A model or bento is neither in the local BentoML store nor where the environment keeps them."""


def _in_store(kind: str, tag: str) -> bool:
    from mlops_assets.packaging import _bentoml

    bentoml = _bentoml()
    getter = bentoml.models.get if kind == "models" else bentoml.bentos.get
    try:
        getter(tag)
    except bentoml.exceptions.NotFound:
        return False
    return True


class BentoStore(dg.ConfigurableResource):
    """Keeps a built model and bento where every machine of the environment finds them, and brings them back."""

    @abstractmethod
    def publish(self, model_tag: str, bento_tag: str) -> str:
        """Keep the model and bento (both in the local BentoML store) for good; returns where the bento is."""

    @abstractmethod
    def ensure_model(self, model_tag: str) -> None:
        """Bring `model_tag` into the local BentoML store when it is kept elsewhere and missing here. Raises
        BentoNotFoundError when it is kept nowhere (the local store's users name their own remedy)."""

    @abstractmethod
    def ensure_bento(self, bento_tag: str) -> None:
        """Bring `bento_tag`, and the model it serves, into the local BentoML store when missing here."""

    @abstractmethod
    def problem(self) -> str:
        """Why the store cannot be used ('' when it can), checked before a run starts."""


class LocalBentoStore(BentoStore):
    """The local BentoML store under MLOPS_HOME is the store: nothing is copied anywhere or brought back (what it
    lacks, its users report with their own remedy, e.g. `mlops models restore N`)."""

    def publish(self, model_tag: str, bento_tag: str) -> str:
        from mlops_assets.packaging import _bentoml

        return str(_bentoml().bentos.get(bento_tag).path)

    def ensure_model(self, model_tag: str) -> None:
        return None

    def ensure_bento(self, bento_tag: str) -> None:
        return None

    def problem(self) -> str:
        return ""


class GcsBentoStore(BentoStore):
    """Models and bentos exported below `url` (gs://bucket/prefix), through dagster-gcp's GCS resource."""

    url: str
    gcs: GCSResource

    def location(self, kind: str, tag: str) -> GcsLocation:
        name, _, version = tag.partition(":")
        return parse_gcs_url(self.url).child(kind, f"{name}-{version}{_SUFFIX[kind]}")

    def publish(self, model_tag: str, bento_tag: str) -> str:
        for kind, tag in (("models", model_tag), ("bentos", bento_tag)):
            self._export(kind, tag)
        return str(self.location("bentos", bento_tag))

    def ensure_model(self, model_tag: str) -> None:
        self._import("models", model_tag)

    def ensure_bento(self, bento_tag: str) -> None:
        from mlops_assets.packaging import bento_model_tag

        self._import("bentos", bento_tag)
        self.ensure_model(bento_model_tag(bento_tag))

    def problem(self) -> str:
        try:
            location = parse_gcs_url(self.url)
        except ValueError as error:
            return str(error)
        return location_problem(self.gcs.get_client(), location, must_hold_objects=False)

    def _export(self, kind: str, tag: str) -> None:
        """Upload the exported item unless it is there already (tags are content-derived: same tag, same item)."""
        from mlops_assets.packaging import export_store_item

        location = self.location(kind, tag)
        blob = self.gcs.get_client().bucket(location.bucket).blob(location.prefix)
        if blob.exists():
            return
        with tempfile.TemporaryDirectory(prefix="bento-export-", dir=self._scratch()) as directory:
            exported = export_store_item(kind, tag, Path(directory) / location.prefix.rpartition("/")[2])
            # One object, written whole: a reader never sees half an export.
            blob.upload_from_filename(str(exported))

    def _import(self, kind: str, tag: str) -> None:
        from google.api_core import exceptions

        from mlops_assets.packaging import import_store_item

        if _in_store(kind, tag):
            return
        location = self.location(kind, tag)
        blob = self.gcs.get_client().bucket(location.bucket).blob(location.prefix)
        with tempfile.TemporaryDirectory(prefix="bento-import-", dir=self._scratch()) as directory:
            path = Path(directory) / location.prefix.rpartition("/")[2]
            try:
                blob.download_to_filename(str(path))
            except exceptions.NotFound:
                raise BentoNotFoundError(
                    f"{kind[:-1].capitalize()} {tag} is neither in the local BentoML store nor at {location}; "
                    "rematerialize the bento asset that built it."
                ) from None
            import_store_item(kind, tag, path)

    @staticmethod
    def _scratch() -> Path:
        scratch = settings.mlops_home() / "cache" / "bento-transfers"
        scratch.mkdir(parents=True, exist_ok=True)
        return scratch
