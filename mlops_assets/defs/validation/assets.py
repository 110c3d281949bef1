"""Validation: decode every image once, quarantine bad files, run the Great Expectations suite."""

from dataclasses import asdict
from pathlib import Path

import dagster as dg

from mlops_assets.defs.validation.checks import BLOCKING_CHECKS, CHECK_NAMES, label_memory
from mlops_assets.defs.validation.report import validation_markdown
from mlops_assets.defs.versioning import code_version_metadata, own_code_version
from mlops_assets.lib.code_fingerprint import derived_version
from mlops_assets.lib.data.expectation_profiles import DEFAULT_PROFILE, load_profile
from mlops_assets.lib.data.manifest import DatasetManifest
from mlops_assets.lib.data.validated_data import (
    BASELINE_FILE,
    QUARANTINE_FILE,
    GeometryConfig,
    ValidatedDataset,
    build_validated_dataset,
    load_validated_dataset,
)
from mlops_assets.resources.artifacts import LocalArtifactStore


class ValidatedImagesConfig(dg.Config):
    """Model input geometry (0 = infer from the data) and the expectation profile (a name or a YAML path)."""

    image_height: int = 0
    image_width: int = 0
    channels: int = 0
    max_side: int = 64
    expectations: str = DEFAULT_PROFILE


def _previous_build(context: dg.AssetExecutionContext) -> ValidatedDataset | None:
    """The last materialized validated data, whose decoded images can be reused by content hash."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    path = event.asset_materialization.metadata.get("storage_path") if event and event.asset_materialization else None
    if path is None or not (Path(path.value) / "dataset.json").exists():
        return None
    return load_validated_dataset(Path(path.value))


@dg.asset(
    group_name="validation",
    kinds={"numpy", "great_expectations"},
    automation_condition=dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed(),
)
def validated_images(
    context: dg.AssetExecutionContext,
    config: ValidatedImagesConfig,
    raw_images: DatasetManifest,
    artifacts: LocalArtifactStore,
) -> dg.Output[ValidatedDataset]:
    """Decoded, resized uint8 arrays, per-image statistics, quarantine report, baseline and Data Docs."""
    geometry = GeometryConfig(config.image_height, config.image_width, config.channels, config.max_side)
    profile = load_profile(config.expectations)
    if profile.labels:
        expected, source = profile.labels, f"configured in profile {profile.name!r}"
    else:
        memory = label_memory()
        expected = memory.recall(raw_images.root) or ()
        source = f"recorded when this dataset first passed ({memory.path_for(raw_images.root)})"
    # The expected label set is left out: it only becomes known once the same data first passes, and then agrees.
    version = derived_version(raw_images.data_version, own_code_version(context), asdict(geometry), profile.fingerprint)
    destination = artifacts.path_for("validated_images", version)
    cache_hit = (destination / "dataset.json").exists()
    if cache_hit:
        validated = load_validated_dataset(destination)
        context.log.info(f"Cache hit: reusing validated data {destination}")
    else:
        validated = build_validated_dataset(
            raw_images,
            geometry,
            destination,
            profile=profile,
            expected_labels=tuple(expected),
            labels_source=source,
            previous=_previous_build(context),
            version=version,
        )
        context.log.info(f"Decoded {validated.num_decoded_now} images; the others were reused by content hash.")
    report = validated.quarantine()
    quarantined = report[report["status"] == "quarantined"]
    if len(quarantined):
        context.log.warning(
            f"{len(quarantined)} files quarantined (excluded from training), listed in "
            f"{validated.directory}/{QUARANTINE_FILE}; first: {quarantined.iloc[0].to_dict()}"
        )
    spec = validated.image_spec
    return dg.Output(
        validated,
        data_version=dg.DataVersion(version),
        metadata={
            **code_version_metadata(context, cache_hit, version),
            "num_decoded_now": 0 if cache_hit else validated.num_decoded_now,
            "storage_path": dg.MetadataValue.path(validated.directory),
            "input_shape": f"{spec.channels}x{spec.height}x{spec.width} (channels x height x width)",
            "expectation_profile": profile.name,
            "num_images_kept": int(sum(validated.split_counts.values())),
            "num_quarantined": len(quarantined),
            "num_skipped": validated.num_skipped,
            "num_invalid": validated.num_invalid,
            "image_policy": dg.MetadataValue.json(validated.image_policy),
            "split_counts": dg.MetadataValue.json(validated.split_counts),
            "normalization": dg.MetadataValue.json({"mean": spec.mean, "std": spec.std}),
            "validation_summary": validation_markdown(validated.outcomes(), CHECK_NAMES, BLOCKING_CHECKS, report),
            "quarantine_report": dg.MetadataValue.path(f"{validated.directory}/{QUARANTINE_FILE}"),
            "baseline_statistics": dg.MetadataValue.path(f"{validated.directory}/{BASELINE_FILE}"),
            "data_docs": dg.MetadataValue.path(str(validated.data_docs_index)),
        },
    )
