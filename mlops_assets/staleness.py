"""Which assets need rebuilding: Dagster's stale status plus a fresh look at the dataset folder."""

from __future__ import annotations

import dagster as dg

# Dagster computes staleness (code version changed, upstream data version changed) in this resolver; the UI and
# GraphQL `staleStatus` use the same one. dagster is pinned exactly, so the internal import is stable here.
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._time import get_current_datetime

from mlops_assets.defs.ingest.sensors import last_materialized_data_version


def stale_assets(
    defs: dg.Definitions, instance: dg.DagsterInstance, current_raw_data_version: str
) -> dict[str, list[str]]:
    """Asset name -> reasons it is stale or missing, in topological order; empty when everything is current. Only
    the pipeline job's assets count: deployments and monitoring are started on their own (defs/jobs.py)."""
    from mlops_assets.defs.jobs import PIPELINE_SELECTION

    graph = defs.resolve_asset_graph()
    built = PIPELINE_SELECTION.resolve(graph)
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=graph,
    )
    resolver = CachingStaleStatusResolver(instance=instance, asset_graph=graph, loading_context=view)
    stale: dict[str, list[str]] = {}
    for key in graph.toposorted_asset_keys:
        if key not in built:
            continue
        name = key.to_user_string()
        status = resolver.get_status(key)
        if status == StaleStatus.MISSING:
            stale[name] = ["never materialized"]
        elif status == StaleStatus.STALE:
            stale[name] = [
                f"{cause.asset_key.to_user_string()}: {cause.reason}" for cause in resolver.get_stale_causes(key)
            ]
    materialized = last_materialized_data_version(instance)
    if "raw_images" not in stale and materialized != current_raw_data_version:
        stale["raw_images"] = [f"dataset content changed ({str(materialized)[:12]} -> {current_raw_data_version[:12]})"]
    order = [key.to_user_string() for key in graph.toposorted_asset_keys]
    return {name: stale[name] for name in order if name in stale}
