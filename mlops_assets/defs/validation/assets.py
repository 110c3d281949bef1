"""Validation: decode every image once into training arrays plus per-image statistics."""

from dataclasses import asdict

import dagster as dg

from mlops_assets.defs.metadata import markdown_table
from mlops_assets.defs.versioning import code_version_metadata, own_code_version
from mlops_assets.lib.code_fingerprint import derived_version
from mlops_assets.lib.manifest import DatasetManifest
from mlops_assets.lib.validated_data import (
    GeometryConfig,
    ValidatedDataset,
    build_validated_dataset,
    load_validated_dataset,
)
from mlops_assets.resources.artifacts import LocalArtifactStore


class ValidatedImagesConfig(dg.Config):
    """Model input geometry; 0 means 'infer from the data' (most common size, long side <= max_side)."""

    image_height: int = 0
    image_width: int = 0
    channels: int = 0
    max_side: int = 64


@dg.asset(
    group_name="validation",
    kinds={"numpy"},
    automation_condition=dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed(),
)
def validated_images(
    context: dg.AssetExecutionContext,
    config: ValidatedImagesConfig,
    raw_images: DatasetManifest,
    artifacts: LocalArtifactStore,
) -> dg.Output[ValidatedDataset]:
    """Decoded, resized uint8 arrays and per-image statistics, stored once for training and evaluation."""
    geometry = GeometryConfig(config.image_height, config.image_width, config.channels, config.max_side)
    version = derived_version(raw_images.data_version, own_code_version(context), asdict(geometry))
    destination = artifacts.path_for("validated_images", version)
    cache_hit = (destination / "dataset.json").exists()
    if cache_hit:
        validated = load_validated_dataset(destination)
        context.log.info(f"Cache hit: reusing validated arrays {destination}")
    else:
        validated = build_validated_dataset(raw_images, geometry, destination, version=version)
    stats = validated.statistics()
    invalid = stats[stats["error"] != ""]
    if len(invalid):
        context.log.warning(f"{len(invalid)} files could not be decoded and are excluded from every split.")
    spec = validated.image_spec
    return dg.Output(
        validated,
        data_version=dg.DataVersion(version),
        metadata={
            **code_version_metadata(context, cache_hit, version),
            "storage_path": dg.MetadataValue.path(validated.directory),
            "input_shape": f"{spec.channels}x{spec.height}x{spec.width} (channels x height x width)",
            "num_decoded": int(len(stats) - len(invalid)),
            "num_invalid": int(len(invalid)),
            "split_counts": dg.MetadataValue.json(validated.split_counts),
            "normalization": dg.MetadataValue.json({"mean": spec.mean, "std": spec.std}),
            "invalid_files": markdown_table(
                ["path", "reason"], invalid[["path", "error"]].head(20).itertuples(index=False)
            )
            if len(invalid)
            else "none",
        },
    )
