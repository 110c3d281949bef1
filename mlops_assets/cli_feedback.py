"""`mlops feedback`: ground-truth labels for logged predictions, by the request id the service answered with."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterable
from pathlib import Path

from mlops_assets import settings
from mlops_assets.lib.settings_validation import ConfigError

FILE_HELP = (
    "a CSV file with the columns request_id, label and optionally index (the image's position in its request), "
    "or a JSON-lines file (.jsonl) of such objects"
)
UNMATCHED_NOTE = "only a sample of requests is logged: prediction_log_sample_rate"


def _file_items(path: Path) -> list[tuple[str, dict]]:
    """The rows of a feedback file, each with where it is ("line N" of JSON lines, "row N" of a CSV, 1-based data
    rows); a ConfigError naming the file and the place when unreadable."""
    source = f"feedback file {path}"
    try:
        # utf-8-sig: spreadsheet programs start their CSV exports with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(source, [f"cannot be read ({type(error).__name__}: {error})"]) from None
    if path.suffix in (".jsonl", ".json"):
        items = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((f"line {number}", json.loads(line)))
            except ValueError as error:
                raise ConfigError(source, [f"line {number}: not JSON ({error})"]) from None
        return items
    rows = []
    for number, row in enumerate(csv.DictReader(text.splitlines()), start=1):
        if None in row or not {"request_id", "label"} <= set(row):
            raise ConfigError(source, [f"row {number}: expected the columns request_id, label[, index]: {row}"])
        if "index" in row:
            if not str(row["index"]).isdigit():
                raise ConfigError(source, [f"row {number}: index = {row['index']!r}: expected an integer >= 0"])
            row["index"] = int(row["index"])
        rows.append((f"row {number}", row))
    return rows


def _checked(source: str, items: list[tuple[str, object]]) -> list:
    """Each item checked alone (any number of them: the CLI writes to the store, no request body limit applies);
    a ConfigError naming the first bad one by its line or row."""
    from pydantic import ValidationError

    from mlops_assets.lib.monitoring.capture import FeedbackItem

    checked = []
    for where, item in items:
        try:
            checked.append(FeedbackItem.model_validate(item))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "item"
            got = repr(first.get("input"))
            got = got if len(got) <= 80 else got[:77] + "..."
            raise ConfigError(source, [f"{where}: {field}: {first['msg']} (got {got})"]) from None
    return checked


def _logged_models(store, wanted: set[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """(request id, index) -> the model tag of its logged prediction, for the keys in `wanted` that were logged."""
    from mlops_assets.lib.serving.prediction_store import records

    found = {}
    for record in records(store):
        if not isinstance(record, dict):
            continue
        key = (record.get("request_id"), record.get("index", 0))
        if key in wanted and isinstance(record.get("model_version"), str):
            found[key] = record["model_version"]
    return found


def _label_problems(items: Iterable, logged: dict[tuple[str, int], str]) -> list[str]:
    """Each label no model can have: checked against the labels of the version its logged prediction names, or,
    for labels matching no logged prediction, the production version's (as the /feedback endpoint checks them)."""
    from mlops_assets.environments import opened

    problems = []
    with opened("registry") as registry, registry.open() as models:
        views: dict[str, object] = {}
        production = models.production()
        for number, item in enumerate(items, start=1):
            tag = logged.get((item.request_id, item.index))
            if tag is not None and tag not in views:
                views[tag] = models.find_by_model_tag(tag)
            view = views.get(tag) if tag is not None else None
            view = view or production
            if view is None:
                problems.append(
                    f"item {number}: request {item.request_id} image {item.index} matches no logged prediction and "
                    f"no version is in production in {registry.environment} to check label {item.label!r} against"
                )
            elif item.label not in view.labels:
                problems.append(
                    f"item {number}: {item.label!r} is not a label of version {view.number} ({view.model_tag}) "
                    f"(labels: {', '.join(view.labels)})"
                )
    return problems


def command_feedback(args: argparse.Namespace) -> int:
    from mlops_assets.environments import opened
    from mlops_assets.lib.monitoring.capture import FEEDBACK, feedback_record
    from mlops_assets.lib.serving.prediction_log import PredictionLog
    from mlops_assets.lib.serving.prediction_store import substore

    settings.export_environment()
    if args.file and args.pairs:
        raise ConfigError("command line", ["give a FILE or --label REQUEST_ID LABEL pairs, not both"])
    if args.file:
        source = f"feedback file {args.file}"
        items = _file_items(Path(args.file))
    elif args.pairs:
        source = "command line"
        items = [
            (f"--label {number}", {"request_id": request_id, "label": label, "index": args.index})
            for number, (request_id, label) in enumerate(args.pairs, start=1)
        ]
    else:
        raise ConfigError("command line", [f"nothing to record: give {FILE_HELP}, or --label REQUEST_ID LABEL"])
    if not items:
        raise ConfigError(source, ["holds no feedback rows"])
    checked = _checked(source, items)
    with opened("prediction_logs") as logs:
        store = logs.store()
        logged = _logged_models(store, {(item.request_id, item.index) for item in checked})
        problems = _label_problems(checked, logged)
        if problems:
            # Nothing is recorded: a misspelt label must not count as a wrong prediction.
            shown = problems[:5] + ([f"and {len(problems) - 5} more"] if len(problems) > 5 else [])
            raise ConfigError(source, shown)
        writer = PredictionLog(substore(store, FEEDBACK), 1.0)
        writer.submit([feedback_record(item, "mlops feedback") for item in checked])
        writer.close(timeout_s=60)
        where = writer.store
    unmatched = sum((item.request_id, item.index) not in logged for item in checked)
    print(f"Recorded {len(checked)} label(s) for logged predictions in {where}; `mlops monitor` reports live accuracy.")
    if unmatched:
        print(f"{unmatched} label(s) match no logged prediction ({UNMATCHED_NOTE}).")
    return 0


def add_feedback_parser(commands: argparse._SubParsersAction) -> None:
    feedback = commands.add_parser(
        "feedback", help="record ground-truth labels for logged predictions, by the request id the service answered"
    )
    feedback.add_argument("file", nargs="?", help=FILE_HELP)
    feedback.add_argument(
        "--label",
        dest="pairs",
        nargs=2,
        action="append",
        metavar=("REQUEST_ID", "LABEL"),
        help="one request's true label (repeatable)",
    )
    feedback.add_argument("--index", type=int, default=0, help="the image's position in its request (with --label)")
    feedback.set_defaults(handler=command_feedback)
