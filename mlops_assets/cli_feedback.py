"""`mlops feedback`: ground-truth labels for logged predictions, by the request id the service answered with."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from mlops_assets import settings
from mlops_assets.lib.settings_validation import ConfigError

FILE_HELP = (
    "a CSV file with the columns request_id, label and optionally index (the image's position in its request), "
    "or a JSON-lines file (.jsonl) of such objects"
)
UNMATCHED_NOTE = "only a sample of requests is logged: prediction_log_sample_rate"


# The most problems one refusal lists (the rest are counted): a bad export can hold thousands of bad rows.
MAX_SHOWN = 20


def _refuse(source: str, problems: list[str]) -> ConfigError:
    """One error for every problem found (the first MAX_SHOWN listed, the rest counted); nothing is recorded."""
    shown = problems[:MAX_SHOWN] + ([f"and {len(problems) - MAX_SHOWN} more"] if len(problems) > MAX_SHOWN else [])
    if len(problems) > 1:
        shown.insert(0, f"{len(problems)} problems, nothing recorded")
    return ConfigError(source, shown)


def _file_items(path: Path) -> tuple[list[tuple[str, dict]], list[str]]:
    """The rows of a feedback file, each with where it is ("line N" of JSON lines, "row N" of a CSV, 1-based data
    rows), and one problem per row that cannot be read; a ConfigError naming the file when it is unreadable or a CSV
    lacks the columns."""
    source = f"feedback file {path}"
    try:
        # utf-8-sig: spreadsheet programs start their CSV exports with a byte-order mark.
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(source, [f"cannot be read ({type(error).__name__}: {error})"]) from None
    items, problems = [], []
    if path.suffix in (".jsonl", ".json"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append((f"line {number}", json.loads(line)))
            except ValueError as error:
                problems.append(f"line {number}: not JSON ({error})")
        return items, problems
    for number, row in enumerate(csv.DictReader(text.splitlines()), start=1):
        if not {"request_id", "label"} <= set(row):
            raise ConfigError(source, [f"row {number}: expected the columns request_id, label[, index]: {row}"])
        if None in row:
            problems.append(f"row {number}: more fields than the columns request_id, label[, index]: {row}")
            continue
        if "index" in row:
            if not str(row["index"]).isdigit():
                problems.append(f"row {number}: index = {row['index']!r}: expected an integer >= 0")
                continue
            row["index"] = int(row["index"])
        items.append((f"row {number}", row))
    return items, problems


def _shown_value(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _checked(items: list[tuple[str, object]]) -> tuple[list[tuple[str, object]], list[str]]:
    """Each item checked alone (any number of them: the CLI writes to the store, no request body limit applies), with
    where it is; and one problem per bad field of each bad item, named by its line or row."""
    from pydantic import ValidationError

    from mlops_assets.lib.monitoring.capture import FeedbackItem

    checked, problems = [], []
    for where, item in items:
        try:
            checked.append((where, FeedbackItem.model_validate(item)))
        except ValidationError as error:
            for found in error.errors():
                field = ".".join(str(part) for part in found["loc"]) or "item"
                if field == "request_id" and found["type"] == "string_pattern_mismatch":
                    problems.append(
                        f"{where}: request id {_shown_value(found['input'])} is not a request id (32 hex characters, "
                        "as the service returns in `request_id`)"
                    )
                else:
                    problems.append(f"{where}: {field}: {found['msg']} (got {_shown_value(found.get('input'))})")
    return checked, problems


def _logged(store, request_ids: set[str]) -> tuple[dict[tuple[str, int], str], dict[str, int]]:
    """For the requests `request_ids` that were logged: (request id, index) -> the model tag of each logged
    prediction, and request id -> how many images it had (a sampled request is logged whole, indexes 0 to N-1)."""
    from mlops_assets.lib.serving.prediction_store import records

    models: dict[tuple[str, int], str] = {}
    for record in records(store):
        if not isinstance(record, dict) or record.get("request_id") not in request_ids:
            continue
        index = record.get("index", 0)
        if isinstance(index, int) and not isinstance(index, bool) and isinstance(record.get("model_version"), str):
            models[(record["request_id"], index)] = record["model_version"]
    images: dict[str, int] = {}
    for request_id, index in models:
        # Indexes run from 0: the highest logged one + 1 (a record lost to a damaged file cannot shrink the count).
        images[request_id] = max(images.get(request_id, 0), index + 1)
    return models, images


def _index_problems(checked: list[tuple[str, object]], images: dict[str, int]) -> list[str]:
    """Each item whose index is outside its logged request's images (a request not logged cannot be checked)."""
    return [
        f"{where}: index {item.index} is outside request {item.request_id}: it had {images[item.request_id]} "
        f"image(s) (indexes 0 to {images[item.request_id] - 1})"
        for where, item in checked
        if item.request_id in images and item.index >= images[item.request_id]
    ]


def _label_problems(checked: list[tuple[str, object]], logged: dict[tuple[str, int], str]) -> list[str]:
    """Each label no model can have: checked against the labels of the version its logged prediction names, or,
    for labels matching no logged prediction, the production version's (as the /feedback endpoint checks them)."""
    from mlops_assets.environments import opened

    problems = []
    with opened("registry") as registry, registry.open() as models:
        views: dict[str, object] = {}
        production = models.production()
        for where, item in checked:
            tag = logged.get((item.request_id, item.index))
            if tag is not None and tag not in views:
                views[tag] = models.find_by_model_tag(tag)
            view = views.get(tag) if tag is not None else None
            view = view or production
            if view is None:
                problems.append(
                    f"{where}: request {item.request_id} image {item.index} matches no logged prediction and "
                    f"no version is in production in {registry.environment} to check label {item.label!r} against"
                )
            elif item.label not in view.labels:
                problems.append(
                    f"{where}: {item.label!r} is not a label of version {view.number} ({view.model_tag}) "
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
        items, problems = _file_items(Path(args.file))
    elif args.pairs:
        source = "command line"
        items = [
            (f"--label {number}", {"request_id": request_id, "label": label, "index": args.index})
            for number, (request_id, label) in enumerate(args.pairs, start=1)
        ]
        problems = []
    else:
        raise ConfigError("command line", [f"nothing to record: give {FILE_HELP}, or --label REQUEST_ID LABEL"])
    if not items and not problems:
        raise ConfigError(source, ["holds no feedback rows"])
    checked, bad = _checked(items)
    problems += bad
    with opened("prediction_logs") as logs:
        store = logs.store()
        logged, images = _logged(store, {item.request_id for _, item in checked})
        problems += _index_problems(checked, images)
        problems += _label_problems(checked, logged)
        if problems:
            # Nothing is recorded: a misspelt label must not count as a wrong prediction, and a file is fixed and
            # given again whole.
            problems.sort(key=_position)
            raise _refuse(source, problems)
        writer = PredictionLog(substore(store, FEEDBACK), 1.0)
        writer.submit([feedback_record(item, "mlops feedback") for _, item in checked])
        writer.close(timeout_s=60)
        where = writer.store
    unmatched = sum((item.request_id, item.index) not in logged for _, item in checked)
    if unmatched:
        print(
            f"Recorded {len(checked)} label(s) in {where}; {unmatched} of them match no logged prediction yet "
            f"({UNMATCHED_NOTE}); `mlops monitor` reports live accuracy for the others."
        )
    else:
        print(
            f"Recorded {len(checked)} label(s) for logged predictions in {where}; `mlops monitor` reports live "
            "accuracy."
        )
    return 0


def _position(problem: str) -> int:
    """The row, line or --label number a problem starts with ("row 3: ..."), so problems are listed in input order
    (a stable sort keeps one row's problems together)."""
    number = problem.split(":", 1)[0].rsplit(" ", 1)[-1]
    return int(number) if number.isdigit() else 0


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
