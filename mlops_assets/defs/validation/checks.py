"""Data-quality checks on validated_images: the Great Expectations outcomes, blocking or warning."""

import dagster as dg

from mlops_assets.defs.metadata import home_path
from mlops_assets.defs.validation.report import check_markdown
from mlops_assets.lib.data import data_validation as roles
from mlops_assets.lib.data.validated_data import ValidatedDataset
from mlops_assets.resources import label_sets
from mlops_assets.resources.artifacts import ArtifactStore

QUARANTINE_CHECK = "quarantine_within_limit"
CLASS_COVERAGE_CHECK = "class_coverage"
LABEL_SET_CHECK = "label_set_expected"
LEAKAGE_CHECK = "no_train_test_leakage"
DUPLICATES_CHECK = "no_exact_duplicates"

CHECK_NAMES = {
    roles.QUARANTINE: QUARANTINE_CHECK,
    roles.CLASSES: CLASS_COVERAGE_CHECK,
    roles.LABELS: LABEL_SET_CHECK,
    roles.LEAKAGE: LEAKAGE_CHECK,
    roles.DUPLICATES: DUPLICATES_CHECK,
}
# Blocking checks stop the run before training; warnings are shown and recorded only.
BLOCKING_CHECKS = frozenset({QUARANTINE_CHECK, CLASS_COVERAGE_CHECK, LABEL_SET_CHECK, LEAKAGE_CHECK})
DESCRIPTIONS = {
    QUARANTINE_CHECK: "Files failing per-file expectations are quarantined; at most max_quarantined_fraction may be.",
    CLASS_COVERAGE_CHECK: "Enough classes, each with min_images_per_class usable images, one in training, "
    "and a bounded imbalance.",
    LABEL_SET_CHECK: "The labels equal the profile's label set, or the set recorded when this dataset first passed.",
    LEAKAGE_CHECK: "No image content appears in both the test split and the train/validation splits.",
    DUPLICATES_CHECK: "Warning: identical files (same SHA-256), including ones filed under different labels.",
}


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(name, asset="validated_images", blocking=name in BLOCKING_CHECKS, description=description)
        for name, description in DESCRIPTIONS.items()
    ],
)
def validated_images_quality(
    context: dg.AssetCheckExecutionContext, validated_images: ValidatedDataset, artifacts: ArtifactStore
):
    """Report the Great Expectations suite's outcomes; blocking failures stop training, warnings do not."""
    outcomes = validated_images.outcomes()
    blocking_passed = all(o.passed for o in outcomes if CHECK_NAMES[o.role] in BLOCKING_CHECKS)
    if blocking_passed and validated_images.dataset_root:
        recorded = label_sets.remember(
            artifacts, validated_images.dataset_root, validated_images.labels, validated_images.data_version
        )
        context.log.info(f"Label set of {validated_images.dataset_root} is recorded in {recorded}.")
    for outcome in outcomes:
        name = CHECK_NAMES[outcome.role]
        blocking = name in BLOCKING_CHECKS
        yield dg.AssetCheckResult(
            check_name=name,
            asset_key="validated_images",
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
            description=outcome.summary if outcome.passed else f"Failed: {outcome.summary}",
            metadata={
                "summary": check_markdown(outcome),
                "severity": "blocking" if blocking else "warning",
                "expectations": dg.MetadataValue.json(outcome.expectations),
                "failed_expectations": len(outcome.failures()),
                "details": dg.MetadataValue.json(outcome.details[:500]),
                "data_docs": home_path(validated_images.data_docs_index),
            },
        )
