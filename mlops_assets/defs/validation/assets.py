"""Validation: decode every image once, quarantine bad files, run the Great Expectations suite."""

from dataclasses import asdict

import dagster as dg
import pydantic

from mlops_assets.defs.groups import DATA, presentation
from mlops_assets.defs.metadata import home_path, resolve_home_path
from mlops_assets.defs.validation.checks import BLOCKING_CHECKS, CHECK_NAMES
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
from mlops_assets.resources import label_sets
from mlops_assets.resources.artifacts import ArtifactStore
from mlops_assets.resources.dataset_store import DatasetStore


class ValidatedImagesConfig(dg.Config):
    """Model input geometry (0 = infer from the data) and the expectation profile (a name or a YAML path)."""

    # Bounds are checked before a CLI run starts (config_checks) and when a step starts; the launchpad shows the
    # descriptions.
    image_height: int = pydantic.Field(
        default=0, ge=0, le=65_535, description="Model input height in pixels, 0 to 65535; 0 = infer from the data."
    )
    image_width: int = pydantic.Field(
        default=0, ge=0, le=65_535, description="Model input width in pixels, 0 to 65535; 0 = infer from the data."
    )
    channels: int = pydantic.Field(
        default=0,
        description="Model input channels: 1 (grey) or 3 (colour); 0 = infer from the data.",
        json_schema_extra={"allowed": "0 (infer from the data), 1 or 3"},
    )
    max_side: int = pydantic.Field(
        default=64, ge=1, le=65_535, description="Longest side of an inferred input size in pixels, 1 to 65535."
    )
    expectations: str = pydantic.Field(
        default=DEFAULT_PROFILE,
        min_length=1,
        description="Expectation profile: a name in mlops_assets/expectations/ or the path of a YAML file.",
    )

    @pydantic.field_validator("channels")
    @classmethod
    def _channel_count(cls, value: int) -> int:
        if value not in (0, 1, 3):
            raise ValueError("not a channel count")
        return value


def _previous_build(context: dg.AssetExecutionContext) -> ValidatedDataset | None:
    """The last materialized validated data, whose decoded images can be reused by content hash."""
    event = context.instance.get_latest_materialization_event(context.asset_key)
    path = event.asset_materialization.metadata.get("storage_path") if event and event.asset_materialization else None
    if path is None or not (resolve_home_path(path.value) / "dataset.json").exists():
        return None
    return load_validated_dataset(resolve_home_path(path.value))


@dg.asset(
    **presentation(DATA),
    kinds={"numpy", "greatexpectations"},
    automation_condition=dg.AutomationCondition.eager() | dg.AutomationCondition.code_version_changed(),
)
def validated_images(
    context: dg.AssetExecutionContext,
    config: ValidatedImagesConfig,
    raw_images: DatasetManifest,
    artifacts: ArtifactStore,
    dataset_store: DatasetStore,
) -> dg.Output[ValidatedDataset]:
    """Decoded, resized uint8 arrays, per-image statistics, quarantine report, baseline and Data Docs."""
    geometry = GeometryConfig(config.image_height, config.image_width, config.channels, config.max_side)
    profile = load_profile(config.expectations)
    if profile.labels:
        expected, source = profile.labels, f"configured in profile {profile.name!r}"
    else:
        expected = label_sets.recall(artifacts, raw_images.root) or ()
        recorded = home_path(label_sets.where(artifacts, raw_images.root)).value  # shown in the checks' summaries
        source = f"recorded when this dataset first passed ({recorded})"
    # The expected label set is left out: it only becomes known once the same data first passes, and then agrees.
    version = derived_version(raw_images.data_version, own_code_version(context), asdict(geometry), profile.fingerprint)
    stored = artifacts.fetch("validated_images", version)
    cache_hit = stored is not None and (stored / "dataset.json").exists()
    if cache_hit:
        validated = load_validated_dataset(stored)
        context.log.info(f"Cache hit: reusing validated data {artifacts.uri('validated_images', version)}")
    else:
        with artifacts.publishing("validated_images", version) as destination:
            validated = build_validated_dataset(
                raw_images,
                geometry,
                destination,
                profile=profile,
                expected_labels=tuple(expected),
                labels_source=source,
                previous=_previous_build(context),
                version=version,
                # Exactly the files raw_images recorded, from the dataset store (a pinned version's too).
                files_root=dataset_store.local_root(raw_images),
                # A large dataset takes minutes: the run's log says how far decoding and validation are.
                progress=context.log.info,
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
            # Counts first (numbers Dagster plots), then the checks' verdicts, then the files and versioning.
            "num_images_kept": int(sum(validated.split_counts.values())),
            "num_quarantined": len(quarantined),
            "num_skipped": validated.num_skipped,
            "num_invalid": validated.num_invalid,
            "num_decoded_now": 0 if cache_hit else validated.num_decoded_now,
            "validation_summary": validation_markdown(validated.outcomes(), CHECK_NAMES, BLOCKING_CHECKS, report),
            "split_counts": dg.MetadataValue.json(validated.split_counts),
            "input_shape": f"{spec.channels}x{spec.height}x{spec.width} (channels x height x width)",
            "expectation_profile": profile.name,
            "image_policy": dg.MetadataValue.json(validated.image_policy),
            "normalization": dg.MetadataValue.json({"mean": spec.mean, "std": spec.std}),
            "storage_path": home_path(validated.directory),
            "stored_at": home_path(artifacts.uri("validated_images", version)),
            "quarantine_report": home_path(f"{validated.directory}/{QUARANTINE_FILE}"),
            "baseline_statistics": home_path(f"{validated.directory}/{BASELINE_FILE}"),
            "data_docs": home_path(str(validated.data_docs_index)),
            **code_version_metadata(context, cache_hit, version),
        },
    )
