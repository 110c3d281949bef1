"""Step outputs on GCS, kept per run: dagster-gcp's pickle IO manager with the run-keyed paths of run_outputs.py."""

from __future__ import annotations

import pickle
from typing import Any

import dagster as dg
from dagster_gcp import GCSResource
from dagster_gcp.gcs.io_manager import PickledObjectGCSIOManager
from upath import UPath

from mlops_assets.lib.storage.gcs import parse_gcs_url
from mlops_assets.resources.run_outputs import OUTPUTS_DIR, producing_run, written_path

# Below the store URL: step outputs in their own folder, beside artifacts/ and bentos/.
OUTPUTS_PREFIX = "dagster"


class GcsRunOutputsIOManager(PickledObjectGCSIOManager):
    """Asset values pickled at `<prefix>/outputs/<asset key>/<run id>`, read from the run that produced them (see
    RunOutputsIOManager: one object per asset would let a concurrent run overwrite a value between the step that
    wrote it and the step that reads it). The latest value is also written where dagster-gcp's own
    GCSPickleIOManager keeps it (`<prefix>/<asset key>`), for code that loads assets with it. An object appears
    whole on GCS, so a killed step never leaves a truncated pickle."""

    def __init__(self, bucket: str, client: Any, prefix: str, instance: dg.DagsterInstance) -> None:
        super().__init__(bucket, client=client, prefix=prefix)
        self.instance = instance

    def get_asset_relative_path(self, context: dg.InputContext | dg.OutputContext) -> UPath:
        kept = UPath(OUTPUTS_DIR, *context.asset_key.path)
        if isinstance(context, dg.OutputContext):
            return kept / context.run_id
        run_id = producing_run(context, self.instance)
        if run_id is not None and self.bucket_obj.blob((UPath(self.prefix) / kept / run_id).as_posix()).exists():
            return kept / run_id
        return UPath(*context.asset_key.path)  # written by dagster-gcp's own IO manager

    def dump_to_path(self, context: dg.OutputContext, obj: Any, path: UPath) -> None:
        super().dump_to_path(context, obj, path)
        latest = UPath(self.prefix).joinpath(*context.asset_key.path).as_posix()
        self.bucket_obj.blob(latest).upload_from_string(pickle.dumps(obj))

    def get_metadata(self, context: dg.OutputContext, obj: Any) -> dict[str, dg.MetadataValue]:
        """The value's object as a gs:// URL (Dagster's own `path` is the object name without its bucket)."""
        if obj is None:
            return {}  # Dagster shows no `path` for a step that returned nothing
        # dagster-gcp is pinned exactly: its URL of an object, as it logs it.
        return {"path": dg.MetadataValue.url(self._uri_for_path(written_path(self, context)))}


class GcsRunOutputs(dg.ConfigurableResource):
    """Where step outputs go: below `url` (gs://bucket/prefix)/dagster, through dagster-gcp's GCS resource (bound
    as the IO manager by fixed.fixed_io_manager)."""

    url: str
    gcs: GCSResource

    def io_manager(self, instance: dg.DagsterInstance) -> GcsRunOutputsIOManager:
        location = parse_gcs_url(self.url).child(OUTPUTS_PREFIX)
        return GcsRunOutputsIOManager(location.bucket, self.gcs.get_client(), location.prefix, instance)
