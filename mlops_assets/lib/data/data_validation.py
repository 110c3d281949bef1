"""Great Expectations (1.x) suites: per-file expectations decide quarantine, dataset expectations gate training."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from mlops_assets.lib.data.expectation_profiles import ExpectationProfile

# Roles of the dataset-level outcomes; the Dagster layer maps them to check names and severities.
QUARANTINE = "quarantine"
CLASSES = "classes"
LABELS = "labels"
LEAKAGE = "leakage"
DUPLICATES = "duplicates"
ROLES = (QUARANTINE, CLASSES, LABELS, LEAKAGE, DUPLICATES)

# Per-file results must name every failing file, not GX's default sample of 20.
_COMPLETE = {"result_format": "COMPLETE", "unexpected_index_column_names": ["path"]}


@dataclass
class CheckOutcome:
    """One dataset-level outcome: passed only if every expectation in it passed; `summary` says why not."""

    role: str
    passed: bool = True
    summary: str = ""
    expectations: list[dict] = field(default_factory=list)
    details: list[dict] = field(default_factory=list)

    def failures(self) -> list[dict]:
        return [item for item in self.expectations if not item["success"]]

    def to_dict(self) -> dict:
        return asdict(self)


# The Data Docs site written next to the validated data.
DOCS_SITE = "validation"


class GxSession:
    """An ephemeral GX context; with `docs_dir`, every validation also lands in a Data Docs site there."""

    def __init__(self, docs_dir: Path | None = None) -> None:
        import great_expectations as gx  # costs seconds to import; only when validating
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self.gx = gx
        self.context = gx.get_context(mode="ephemeral")
        # Progress bars would flood the Dagster run logs.
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.docs_dir = docs_dir
        if docs_dir is not None:
            self.context.add_data_docs_site(
                site_name=DOCS_SITE,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        self._source = self.context.data_sources.add_pandas("image_statistics")

    def validate(self, suite_name: str, frame: pd.DataFrame, expectations: list, result_format=None) -> list:
        """Run `expectations` on `frame` as the suite `suite_name`; results in the order given."""
        batch = self._source.add_dataframe_asset(suite_name).add_batch_definition_whole_dataframe("all")
        suite = self.context.suites.add(self.gx.ExpectationSuite(name=suite_name))
        for expectation in expectations:
            suite.add_expectation(expectation)
        definition = self.context.validation_definitions.add(
            self.gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
        )
        result = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format or "SUMMARY")
        by_id = {item.expectation_config.id: item for item in result.results}
        return [by_id[expectation.id] for expectation in suite.expectations]

    def build_docs(self) -> Path | None:
        """Write GX's HTML Data Docs for every suite run so far; returns the index page."""
        if self.docs_dir is None:
            return None
        # Only this site: an ephemeral context also has a default site in a fresh temporary folder, which building
        # every site would write (and leave behind) on each validation.
        self.context.build_data_docs(site_names=[DOCS_SITE])
        return self.docs_dir / "index.html"


def _summary(item) -> dict:
    details = item.result or {}
    return {
        "expectation": item.expectation_config.type,
        "kwargs": {k: v for k, v in item.expectation_config.kwargs.items() if k != "batch_id"},
        "success": bool(item.success),
        "unexpected_count": details.get("unexpected_count"),
        "unexpected_examples": [str(value) for value in list(details.get("partial_unexpected_list") or [])[:10]],
        "observed_value": _plain(details.get("observed_value")),
    }


def _plain(value):
    if isinstance(value, list | tuple | set):
        return sorted(str(item) for item in value)
    return value if value is None or isinstance(value, int | float | str | bool) else str(value)


def _per_file_rules(profile: ExpectationProfile, gx) -> list[tuple[object, Callable[[pd.Series], str]]]:
    """The image policy's verdict (`error`: '' when the file is an image it accepts, else its reason, the same text
    the service answers), then the profile's quality rules, which apply to training only."""
    return [
        (gx.expectations.ExpectColumnValuesToBeInSet(column="error", value_set=[""]), lambda row: row["error"]),
        (
            gx.expectations.ExpectColumnValuesToBeBetween(column="size_bytes", min_value=profile.min_bytes),
            lambda row: (
                f"file size {int(row['size_bytes'])} bytes is outside [{profile.min_bytes}, {profile.max_bytes}]"
            ),
        ),
        (
            gx.expectations.ExpectColumnValuesToBeBetween(column="contrast", min_value=profile.min_contrast),
            lambda row: (
                f"blank or constant image (contrast {row['contrast']:.4f} below min_contrast {profile.min_contrast})"
            ),
        ),
    ]


def quarantine_reasons(session: GxSession, files: pd.DataFrame, profile: ExpectationProfile) -> pd.Series:
    """Per file (same index as `files`): '' if it passes every per-file expectation, else why it is quarantined.

    `files` has one row per image file with path, size_bytes, error ('' when the image policy accepted and decoded
    it, else the policy's reason) and, when decoded, contrast (null otherwise, so only the policy's verdict reports
    a refused file).
    """
    rules = _per_file_rules(profile, session.gx)
    results = session.validate("per_file", files, [expectation for expectation, _ in rules], _COMPLETE)
    by_path = files.set_index("path", drop=False)
    reasons: dict[str, list[str]] = defaultdict(list)
    for (_, describe), result in zip(rules, results, strict=True):
        for unexpected in (result.result or {}).get("unexpected_index_list") or []:
            reasons[unexpected["path"]].append(describe(by_path.loc[unexpected["path"]]))
    return files["path"].map(lambda path: "; ".join(reasons.get(path, []))).rename("quarantine_reason")


def class_table(kept: pd.DataFrame, labels: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per label (those of `kept` and every one in `labels`, with zeros): kept images in each split, the total and
    its share of the largest class."""
    table = kept.pivot_table(index="label", columns="split", values="path", aggfunc="count", fill_value=0)
    table = table.reindex(sorted(set(table.index) | set(labels)), fill_value=0)
    table.index.name = "label"
    for split in ("train", "val", "test"):
        if split not in table.columns:
            table[split] = 0
    table["total"] = table[["train", "val", "test"]].sum(axis=1)
    largest = int(table["total"].max()) if len(table) else 0
    table["share_of_largest"] = table["total"] / largest if largest else 0.0
    return table.reset_index()[["label", "train", "val", "test", "total", "share_of_largest"]]


def _quarantine(session: GxSession, stats: pd.DataFrame, skipped: pd.DataFrame, profile) -> CheckOutcome:
    """The share of image files quarantined; skipped entries (not images) are listed in the summary, not counted."""
    listed = stats[["path", "quarantine_reason"]].assign(quarantined=stats["quarantine_reason"] != "")
    (result,) = session.validate(
        "quarantine",
        listed,
        [
            session.gx.expectations.ExpectColumnValuesToBeInSet(
                column="quarantined", value_set=[False], mostly=1.0 - profile.max_quarantined_fraction
            )
        ],
    )
    quarantined = listed[listed["quarantined"]]
    fraction = len(quarantined) / len(listed) if len(listed) else 0.0
    summary = (
        f"{len(quarantined)} of {len(listed)} files quarantined ({fraction:.1%}); "
        f"the profile allows at most {profile.max_quarantined_fraction:.1%}"
    )
    if len(skipped):
        summary += f"; {len(skipped)} other entries skipped as not images (listed in quarantine.csv, not counted)"
    if not result.success:
        summary += ". Fix or remove the listed files (see quarantine.csv), or raise max_quarantined_fraction"
    return CheckOutcome(
        QUARANTINE,
        bool(result.success),
        summary,
        [_summary(result)],
        [{"path": row.path, "reason": row.quarantine_reason} for row in quarantined.itertuples()],
    )


def _classes(session: GxSession, kept: pd.DataFrame, profile, labels: tuple[str, ...]) -> CheckOutcome:
    table = class_table(kept, labels)
    expectations = session.gx.expectations
    results = session.validate(
        "classes",
        table,
        [
            expectations.ExpectTableRowCountToBeBetween(min_value=profile.min_classes),
            expectations.ExpectColumnValuesToBeBetween(column="total", min_value=profile.min_images_per_class),
            expectations.ExpectColumnValuesToBeBetween(column="train", min_value=1),
            expectations.ExpectColumnValuesToBeBetween(
                column="share_of_largest", min_value=1.0 / profile.max_class_imbalance
            ),
        ],
        {"result_format": "COMPLETE", "unexpected_index_column_names": ["label"]},
    )
    count, per_class, in_train, balance = results
    problems = []
    if not count.success:
        problems.append(f"{len(table)} class(es), fewer than min_classes {profile.min_classes}")
    rows = table.set_index("label")
    # A class with no usable image at all (an empty label folder, or every file quarantined) is reported once, as a
    # too-small class; its missing training image and its imbalance follow from that.
    empty = set(rows.index[rows["total"] == 0])
    for item in (per_class.result or {}).get("unexpected_index_list") or []:
        label = item["label"]
        problems.append(
            f"class '{label}' has {int(rows.loc[label, 'total'])} usable image(s), "
            f"below min_images_per_class {profile.min_images_per_class}"
        )
    for item in (in_train.result or {}).get("unexpected_index_list") or []:
        if item["label"] not in empty:
            problems.append(f"class '{item['label']}' has no image in the training split")
    for item in (balance.result or {}).get("unexpected_index_list") or []:
        label = item["label"]
        if label in empty:
            continue
        ratio = rows["total"].max() / int(rows.loc[label, "total"])
        problems.append(
            f"class '{label}' is {ratio:.1f}x smaller than the largest, above max_class_imbalance "
            f"{profile.max_class_imbalance:g}"
        )
    passed = all(result.success for result in results)
    summary = "; ".join(problems) if problems else f"{len(table)} classes, each with enough usable images"
    return CheckOutcome(CLASSES, passed, summary, [_summary(item) for item in results], table.to_dict("records"))


def _labels(
    session: GxSession, stats: pd.DataFrame, expected: tuple[str, ...], source: str, folders: tuple[str, ...]
) -> CheckOutcome:
    # Every label folder, whether its files were quarantined or it holds none: a new class is still a new class.
    labels = pd.DataFrame({"label": [*stats["label"], *folders]})
    seen = sorted(labels["label"].unique())
    if not expected:
        return CheckOutcome(
            LABELS, True, f"no label set {source} yet; {seen} is recorded once every blocking check passes"
        )
    (result,) = session.validate(
        "labels",
        labels,
        [session.gx.expectations.ExpectColumnDistinctValuesToEqualSet(column="label", value_set=list(expected))],
    )
    unexpected = sorted(set(seen) - set(expected))
    missing = sorted(set(expected) - set(seen))
    if result.success:
        summary = f"labels match the set {source}"
    else:
        summary = f"labels differ from the set {source}: unexpected {unexpected}, missing {missing}"
    return CheckOutcome(
        LABELS,
        bool(result.success),
        summary,
        [_summary(result)],
        [{"label": label, "problem": "unexpected"} for label in unexpected]
        + [{"label": label, "problem": "missing"} for label in missing],
    )


def _leakage(session: GxSession, kept: pd.DataFrame) -> CheckOutcome:
    # Test content must not be seen by fitting or model selection, so train and val count as one side.
    sides = kept.assign(side=kept["split"].where(kept["split"] == "test", "train/val"))
    per_side = sides.drop_duplicates(["sha256", "side"])
    (result,) = session.validate(
        "leakage",
        per_side[["sha256", "side"]],
        [session.gx.expectations.ExpectColumnValuesToBeUnique(column="sha256")],
        {"result_format": "COMPLETE"},
    )
    leaked = sorted(set((result.result or {}).get("unexpected_list") or []))
    details = [
        {"sha256": digest, "files": [f"{r.path} ({r.split})" for r in kept[kept["sha256"] == digest].itertuples()]}
        for digest in leaked
    ]
    summary = (
        "no content appears in both the test split and train/val"
        if result.success
        else f"{len(leaked)} content hash(es) appear in both the test split and train/val; the split assignment "
        "is broken, do not train on this data"
    )
    return CheckOutcome(LEAKAGE, bool(result.success), summary, [_summary(result)], details)


def _duplicates(session: GxSession, kept: pd.DataFrame, profile) -> CheckOutcome:
    (result,) = session.validate(
        "duplicates",
        kept[["sha256"]],
        [
            session.gx.expectations.ExpectColumnValuesToBeUnique(
                column="sha256", mostly=1.0 - profile.max_duplicate_fraction
            )
        ],
    )
    groups = kept[kept.duplicated("sha256", keep=False)].groupby("sha256")
    details = [
        {"sha256": digest, "paths": list(group["path"]), "labels": sorted(set(group["label"]))}
        for digest, group in groups
    ]
    conflicting = sum(1 for item in details if len(item["labels"]) > 1)
    summary = f"{len(details)} group(s) of identical files ({conflicting} with conflicting labels)"
    return CheckOutcome(DUPLICATES, bool(result.success), summary, [_summary(result)], details)


def run_dataset_suites(
    session: GxSession,
    stats: pd.DataFrame,
    skipped: pd.DataFrame,
    profile: ExpectationProfile,
    expected_labels: tuple[str, ...] = (),
    labels_source: str = "configured",
    label_folders: tuple[str, ...] = (),
) -> list[CheckOutcome]:
    """Dataset-level outcomes over per-image statistics (with `quarantine_reason`), the entries skipped at ingest
    and every label folder (an empty one is a class with no usable image)."""
    kept = stats[stats["quarantine_reason"] == ""]
    return [
        _quarantine(session, stats, skipped, profile),
        _classes(session, kept, profile, label_folders),
        _labels(session, stats, expected_labels, labels_source, label_folders),
        _leakage(session, kept),
        _duplicates(session, kept, profile),
    ]
