"""What a model version records so it can be rebuilt (`mlops reproduce`): the dataset it was trained on (name, version
and source), the config of the step that shaped its input (validated_images), the library versions and the hardware.

The dataset and the config are found by following the input pointers Dagster records on each materialization: from
the trained_model materialization of this model to the validated_images one it read, and from there to raw_images.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from mlops_assets.lib.runtime_info import hardware_description, library_versions

# How far back the event log is searched for the materialization of this model (it is normally the latest).
_SEARCHED = 50
_POINTER = "dagster/input_event_pointer/"


def _materialization(
    instance: dg.DagsterInstance, asset: str, *, storage_id: int | None = None, data_version: str | None = None
) -> dg.EventLogRecord | None:
    key = dg.AssetKey(asset)
    records_filter = dg.AssetRecordsFilter(asset_key=key, storage_ids=[storage_id]) if storage_id else key
    for record in instance.fetch_materializations(records_filter, limit=_SEARCHED).records:
        tags = record.asset_materialization.tags or {}
        if data_version is None or tags.get("dagster/data_version") == data_version:
            return record
    return None


def _upstream(instance: dg.DagsterInstance, record: dg.EventLogRecord | None, asset: str) -> dg.EventLogRecord | None:
    """The materialization of `asset` that `record`'s step read."""
    if record is None:
        return None
    pointer = (record.asset_materialization.tags or {}).get(_POINTER + asset)
    return _materialization(instance, asset, storage_id=int(pointer)) if pointer else None


def _value(record: dg.EventLogRecord, key: str) -> Any:
    found = record.asset_materialization.metadata.get(key)
    return getattr(found, "value", found)


def _dataset(raw: dg.EventLogRecord | None) -> dict[str, Any]:
    if raw is None or _value(raw, "dataset_source") is None:
        return {"dataset_name": None, "dataset_version": None, "dataset_source": None}
    reference = str(_value(raw, "dataset_version") or "-")
    name, _, number = reference.partition("@")
    return {
        "dataset_name": name if number else None,
        "dataset_version": int(number) if number.isdigit() else None,
        "dataset_source": _value(raw, "dataset_source"),
    }


def _validation_config(instance: dg.DagsterInstance, validated: dg.EventLogRecord | None) -> dict | None:
    """validated_images' config in the run that materialized it ({} for the defaults); None when not found."""
    if validated is None:
        return None
    run = instance.get_run_by_id(validated.run_id)
    if run is None:
        return None
    section = (run.run_config.get("ops") or {}).get("validated_images") or {}
    return dict(section.get("config") or {})


def validated_version_read_by(instance: dg.DagsterInstance, trained_version: str) -> str | None:
    """The data version (the artifact key) of the validated_images materialization that the trained_model whose data
    version is `trained_version` read; None where the event log no longer tells."""
    validated = _upstream(
        instance, _materialization(instance, "trained_model", data_version=trained_version), "validated_images"
    )
    return None if validated is None else (validated.asset_materialization.tags or {}).get("dagster/data_version")


def training_inputs(context: dg.AssetExecutionContext, model_version: str, device: str) -> dict[str, Any]:
    """The registry's reproducibility columns for the model whose trained_model data version is `model_version`,
    trained on `device` (None where the event log no longer tells, e.g. a materialization older than the search)."""
    instance = context.instance
    trained = _materialization(instance, "trained_model", data_version=model_version)
    validated = _upstream(instance, trained, "validated_images")
    validation = _validation_config(instance, validated)
    return {
        **_dataset(_upstream(instance, validated, "raw_images")),
        "library_versions": library_versions(),
        "training_hardware": hardware_description(device),
        "pipeline_config": None if validation is None else {"validated_images": validation},
    }
