"""Blocking data-quality checks on validated_images, run with Great Expectations."""

import dagster as dg

from mlops_assets.defs.metadata import markdown_table
from mlops_assets.lib.data_validation import ValidationThresholds, class_table, run_image_suite
from mlops_assets.lib.validated_data import ValidatedDataset

IMAGES_DECODABLE_CHECK = "images_decodable"
PIXEL_STATISTICS_CHECK = "pixel_statistics_in_range"
CLASS_COVERAGE_CHECK = "class_coverage"

_ROLES = {
    "decodable": IMAGES_DECODABLE_CHECK,
    "pixels": PIXEL_STATISTICS_CHECK,
    "classes": CLASS_COVERAGE_CHECK,
}
_DESCRIPTIONS = {
    IMAGES_DECODABLE_CHECK: "Nearly every file decodes as an image (at most max_invalid_fraction fail).",
    PIXEL_STATISTICS_CHECK: "Brightness within [0, 1]; almost no blank or constant images.",
    CLASS_COVERAGE_CHECK: "At least two classes, each with min_images_per_class images and one in training.",
}


class DataQualityConfig(dg.Config):
    """Thresholds of the data-quality suite; loosen or tighten them per dataset."""

    max_invalid_fraction: float = 0.01
    min_images_per_class: int = 5
    min_contrast: float = 0.01
    max_constant_fraction: float = 0.01


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset="validated_images", blocking=True, description=_DESCRIPTIONS[name])
        for name in _ROLES.values()
    ],
)
def validated_images_quality(config: DataQualityConfig, validated_images: ValidatedDataset):
    """Run the Great Expectations suite on per-image statistics; failures block training."""
    stats = validated_images.statistics()
    thresholds = ValidationThresholds(
        config.max_invalid_fraction,
        config.min_images_per_class,
        config.min_contrast,
        config.max_constant_fraction,
    )
    classes = class_table(stats)
    for outcome in run_image_suite(stats, thresholds, _ROLES):
        metadata: dict[str, object] = {
            "expectations": dg.MetadataValue.json(outcome.expectations),
            "failed_expectations": len(outcome.failures()),
        }
        if outcome.name == CLASS_COVERAGE_CHECK:
            metadata["images_per_class"] = markdown_table(list(classes.columns), classes.itertuples(index=False))
        yield dg.AssetCheckResult(
            check_name=outcome.name,
            asset_key="validated_images",
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata=metadata,
            description=_DESCRIPTIONS[outcome.name]
            if outcome.passed
            else "Failed: " + "; ".join(f"{f['expectation']} {f['kwargs']}" for f in outcome.failures()),
        )
