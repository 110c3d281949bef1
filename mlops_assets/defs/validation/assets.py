"""Validation: decode every image once, quarantine bad files, run the Great Expectations suite."""

import hashlib
import json
from dataclasses import asdict

import dagster as dg

from mlops_assets.defs.validation.checks import BLOCKING_CHECKS, CHECK_NAMES, label_memory
from mlops_assets.defs.validation.report import validation_markdown
from mlops_assets.lib.expectation_profiles import DEFAULT_PROFILE, load_profile
from mlops_assets.lib.manifest import DatasetManifest
from mlops_assets.lib.validated_data import (
    BASELINE_FILE,
    QUARANTINE_FILE,
    GeometryConfig,
    ValidatedDataset,
    build_validated_dataset,
)
from mlops_assets.resources.artifacts import LocalArtifactStore


class ValidatedImagesConfig(dg.Config):
    """Model input geometry (0 = infer from the data) and the expectation profile (a name or a YAML path)."""

    image_height: int = 0
    image_width: int = 0
    channels: int = 0
    max_side: int = 64
    expectations: str = DEFAULT_PROFILE


@dg.asset(group_name="validation", code_version="1", kinds={"numpy", "great_expectations"})
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
    key = hashlib.sha256(
        json.dumps(
            {
                "data": raw_images.data_version,
                "geometry": asdict(geometry),
                "profile": profile.fingerprint,
                "expected_labels": sorted(expected),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:24]
    validated = build_validated_dataset(
        raw_images,
        geometry,
        artifacts.path_for("validated_images", key),
        profile=profile,
        expected_labels=tuple(expected),
        labels_source=source,
    )
    quarantine = validated.quarantine()
    if len(quarantine):
        context.log.warning(
            f"{len(quarantine)} files quarantined (excluded from training), listed in "
            f"{validated.directory}/{QUARANTINE_FILE}; first: {quarantine.iloc[0].to_dict()}"
        )
    spec = validated.image_spec
    return dg.Output(
        validated,
        data_version=dg.DataVersion(key),
        metadata={
            "storage_path": dg.MetadataValue.path(validated.directory),
            "input_shape": f"{spec.channels}x{spec.height}x{spec.width} (channels x height x width)",
            "expectation_profile": profile.name,
            "num_images_kept": int(sum(validated.split_counts.values())),
            "num_quarantined": len(quarantine),
            "num_invalid": validated.num_invalid,
            "split_counts": dg.MetadataValue.json(validated.split_counts),
            "normalization": dg.MetadataValue.json({"mean": spec.mean, "std": spec.std}),
            "validation_summary": validation_markdown(validated.outcomes(), CHECK_NAMES, BLOCKING_CHECKS, quarantine),
            "quarantine_report": dg.MetadataValue.path(f"{validated.directory}/{QUARANTINE_FILE}"),
            "baseline_statistics": dg.MetadataValue.path(f"{validated.directory}/{BASELINE_FILE}"),
            "data_docs": dg.MetadataValue.path(str(validated.data_docs_index)),
        },
    )
