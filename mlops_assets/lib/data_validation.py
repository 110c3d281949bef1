"""Great Expectations (1.x) suites over per-image statistics, grouped into named checks."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd


@dataclass(frozen=True)
class ValidationThresholds:
    """Bounds a dataset must meet; another dataset can tighten or loosen them through config."""

    max_invalid_fraction: float = 0.01
    min_images_per_class: int = 5
    min_contrast: float = 0.01
    max_constant_fraction: float = 0.01


@dataclass
class CheckOutcome:
    """One named check: passed only if every expectation in it passed."""

    name: str
    passed: bool = True
    expectations: list[dict] = field(default_factory=list)

    def failures(self) -> list[dict]:
        return [item for item in self.expectations if not item["success"]]


def class_table(stats: pd.DataFrame) -> pd.DataFrame:
    """Per label: decodable images in each split."""
    decoded = stats[stats["error"] == ""]
    table = decoded.pivot_table(index="label", columns="split", values="path", aggfunc="count", fill_value=0)
    for split in ("train", "val", "test"):
        if split not in table.columns:
            table[split] = 0
    table = table.reindex(sorted(stats["label"].unique()), fill_value=0)
    table["total"] = table[["train", "val", "test"]].sum(axis=1)
    return table.reset_index()[["label", "train", "val", "test", "total"]]


def run_image_suite(
    stats: pd.DataFrame, thresholds: ValidationThresholds, check_names: dict[str, str]
) -> list[CheckOutcome]:
    """Validate per-image and per-class statistics; `check_names` maps roles to Dagster check names.

    Roles: "decodable", "pixels", "classes".
    """
    import great_expectations as gx  # costs seconds to import; only when validating
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    # Progress bars would flood the Dagster run logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    per_image = stats[stats["error"] == ""].copy()
    per_class = class_table(stats)
    suites = {
        "all_files": (
            stats,
            [
                (
                    check_names["decodable"],
                    gx.expectations.ExpectColumnValuesToBeInSet(
                        column="error", value_set=[""], mostly=1.0 - thresholds.max_invalid_fraction
                    ),
                ),
                (check_names["decodable"], gx.expectations.ExpectColumnValuesToNotBeNull(column="label")),
            ],
        ),
        "decoded_images": (
            per_image,
            [
                (
                    check_names["pixels"],
                    gx.expectations.ExpectColumnValuesToBeBetween(column="brightness", min_value=0.0, max_value=1.0),
                ),
                (
                    check_names["pixels"],
                    gx.expectations.ExpectColumnValuesToBeBetween(
                        column="contrast",
                        min_value=thresholds.min_contrast,
                        mostly=1.0 - thresholds.max_constant_fraction,
                    ),
                ),
                (
                    check_names["pixels"],
                    gx.expectations.ExpectColumnValuesToBeBetween(column="width", min_value=1),
                ),
            ],
        ),
        "classes": (
            per_class,
            [
                (check_names["classes"], gx.expectations.ExpectTableRowCountToBeBetween(min_value=2)),
                (
                    check_names["classes"],
                    gx.expectations.ExpectColumnValuesToBeBetween(
                        column="total", min_value=thresholds.min_images_per_class
                    ),
                ),
                (
                    check_names["classes"],
                    gx.expectations.ExpectColumnValuesToBeBetween(column="train", min_value=1),
                ),
            ],
        ),
    }
    outcomes = {name: CheckOutcome(name) for name in check_names.values()}
    source = context.data_sources.add_pandas("image_statistics")
    for suite_name, (frame, expectations) in suites.items():
        batch = source.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("all")
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
        owners = []
        for check_name, expectation in expectations:
            suite.add_expectation(expectation)
            owners.append(check_name)
        result = context.validation_definitions.add(
            gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
        ).run(batch_parameters={"dataframe": frame})
        by_id = {exp.id: owner for exp, owner in zip(suite.expectations, owners, strict=True)}
        grouped = defaultdict(list)
        for item in result.results:
            grouped[by_id[item.expectation_config.id]].append(item)
        for check_name, items in grouped.items():
            for item in items:
                details = item.result or {}
                outcomes[check_name].expectations.append(
                    {
                        "expectation": item.expectation_config.type,
                        "kwargs": {k: v for k, v in item.expectation_config.kwargs.items() if k != "batch_id"},
                        "success": bool(item.success),
                        "unexpected_count": details.get("unexpected_count"),
                        "unexpected_examples": list(details.get("partial_unexpected_list") or [])[:10],
                        "observed_value": details.get("observed_value"),
                    }
                )
                outcomes[check_name].passed &= bool(item.success)
    return list(outcomes.values())
