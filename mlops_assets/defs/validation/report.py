"""Markdown a person reads in the Dagster UI: what failed, how many, examples."""

from collections import Counter

import dagster as dg
import pandas as pd

from mlops_assets.lib.data.data_validation import CheckOutcome

_EXAMPLES = 20


def _table(headers: list[str], rows: list[list[object]]) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows])


def check_markdown(outcome: CheckOutcome) -> dg.MarkdownMetadataValue:
    """One check: its verdict, the summary line and up to 20 example rows of its details."""
    parts = [f"**{'passed' if outcome.passed else 'FAILED'}**: {outcome.summary}"]
    if outcome.details:
        headers = list(outcome.details[0])
        rows = [[item.get(header, "") for header in headers] for item in outcome.details[:_EXAMPLES]]
        parts.append(_table(headers, rows))
        if len(outcome.details) > _EXAMPLES:
            parts.append(f"... and {len(outcome.details) - _EXAMPLES} more (see the `details` metadata).")
    return dg.MetadataValue.md("\n\n".join(parts))


def validation_markdown(
    outcomes: list[CheckOutcome], check_names: dict[str, str], blocking: frozenset[str], report: pd.DataFrame
) -> dg.MarkdownMetadataValue:
    """The whole validation on one page: every check with its severity, quarantine reasons counted, examples, and
    the entries skipped as not images (`report` is the quarantine report: path, label, reason, status)."""
    rows = []
    for outcome in outcomes:
        name = check_names[outcome.role]
        rows.append(
            [
                name,
                "blocking" if name in blocking else "warning",
                "passed" if outcome.passed else "FAILED",
                outcome.summary,
            ]
        )
    parts = ["### Checks", _table(["check", "severity", "result", "summary"], rows)]
    quarantine = report[report["status"] == "quarantined"]
    if len(quarantine):
        # The first clause of a reason names the rule (e.g. "cannot be decoded", "image mode CMYK ...").
        kinds = Counter(reason.split(":")[0].split(" (")[0] for reason in quarantine["reason"])
        parts += [
            f"### Quarantine: {len(quarantine)} file(s), excluded from training",
            _table(["reason", "files"], [[kind, count] for kind, count in kinds.most_common()]),
            _table(
                ["path", "label", "reason"], quarantine[["path", "label", "reason"]].head(_EXAMPLES).values.tolist()
            ),
        ]
    else:
        parts.append("### Quarantine: none")
    skipped = report[report["status"] == "skipped"]
    if len(skipped):
        parts += [
            f"### Skipped: {len(skipped)} entries that are not images (not counted as quarantined)",
            _table(["path", "label", "reason"], skipped[["path", "label", "reason"]].head(_EXAMPLES).values.tolist()),
        ]
    return dg.MetadataValue.md("\n\n".join(parts))
