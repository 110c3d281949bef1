"""One day of the service's prediction log, read through a small reader interface and checked record by record."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from mlops_assets.lib.serving.prediction_store import LOG_STAGES, file_stage

# What the service writes per image (lib/serving/prediction_log.prediction_record) and monitoring compares.
NUMERIC_FIELDS = ("confidence", "brightness", "contrast", "width", "height")
TEXT_FIELDS = ("model_version", "label", "format", "mode")
# Read when present: which answer it was (what feedback names) and when.
OPTIONAL_TEXT_FIELDS = ("request_id", "timestamp", "stage")
_EXAMPLES = 3


class PredictionLogReader(Protocol):
    """Where the prediction log is read from (a folder, a bucket): file names `<YYYY-MM-DD>...[.<stage>].<pid>.jsonl`,
    oldest first, and one file's records (a last line still being written is left out)."""

    def names(self) -> list[str]: ...

    def read(self, name: str) -> list[dict]: ...


@dataclass
class DayLog:
    """The records of one day (UTC) that can be used, and everything that could not, with the reason."""

    day: dt.date
    records: pd.DataFrame
    files: list[str] = field(default_factory=list)
    empty_files: list[str] = field(default_factory=list)
    # File name -> why it could not be read (its records are not counted).
    unreadable_files: dict[str, str] = field(default_factory=dict)
    malformed_records: int = 0
    malformed_examples: list[str] = field(default_factory=list)
    # File name -> 1-based numbers of its lines that are not JSON (skipped; the file's other records count).
    bad_lines: dict[str, list[int]] = field(default_factory=dict)
    # File name -> (1-based number of its last line, cut off without a newline and left out; whether its writer is
    # gone, so the line will never be finished).
    cut_lines: dict[str, tuple[int, bool]] = field(default_factory=dict)

    @property
    def num_bad_lines(self) -> int:
        return sum(len(numbers) for numbers in self.bad_lines.values())

    def per_model(self) -> dict[str, int]:
        """Usable records per model tag, most first."""
        if self.records.empty:
            return {}
        return dict(Counter(self.records["model_version"]).most_common())

    def for_model(self, model_tag: str) -> pd.DataFrame:
        return self.records[self.records["model_version"] == model_tag].reset_index(drop=True)

    def problems(self) -> list[str]:
        """What was left out, in words (empty when everything was read)."""
        found = []
        if self.empty_files:
            found.append(f"{len(self.empty_files)} empty file(s): {', '.join(self.empty_files[:_EXAMPLES])}")
        for name, reason in list(self.unreadable_files.items())[:_EXAMPLES]:
            found.append(f"file {name} unreadable, its records left out: {reason}")
        if self.bad_lines:
            named = ", ".join(
                f"{name} line(s) {', '.join(str(n) for n in numbers[:_EXAMPLES])}"
                + (f" and {len(numbers) - _EXAMPLES} more" if len(numbers) > _EXAMPLES else "")
                for name, numbers in list(self.bad_lines.items())[:_EXAMPLES]
            )
            found.append(f"{self.num_bad_lines} line(s) that are not JSON skipped: {named}")
        for name, (number, gone) in list(self.cut_lines.items())[:_EXAMPLES]:
            why = "its writer stopped mid-line" if gone else "a writer still appending to it"
            found.append(f"file {name} line {number} cut off, left out ({why})")
        if self.malformed_records:
            found.append(
                f"{self.malformed_records} malformed record(s) left out, e.g. {'; '.join(self.malformed_examples)}"
            )
        return found


def _finite(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def embeddings_of(records: pd.DataFrame) -> np.ndarray:
    """The embeddings [N, D] of the records that carry one (the most common size; [0, 0] when none do)."""
    found = [value for value in records.get("embedding", pd.Series(dtype=object)) if value is not None]
    if not found:
        return np.zeros((0, 0), dtype=np.float32)
    size = Counter(len(value) for value in found).most_common(1)[0][0]
    return np.asarray([value for value in found if len(value) == size], dtype=np.float32)


def record_problem(record: Any) -> str:
    """Why a log record cannot be used ('' when it can)."""
    if not isinstance(record, dict):
        return f"not a JSON object: {str(record)[:60]!r}"
    missing = [name for name in (*TEXT_FIELDS, *NUMERIC_FIELDS) if name not in record]
    if missing:
        return f"missing {', '.join(missing)}"
    for name in TEXT_FIELDS:
        if not isinstance(record[name], str):
            return f"{name} = {record[name]!r} is not text"
    for name in NUMERIC_FIELDS:
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"{name} = {value!r} is not a finite number"
    if not 0.0 <= record["confidence"] <= 1.0:
        return f"confidence = {record['confidence']!r} is outside [0, 1]"
    # The optional fields (older logs lack them) are read too, so a present one must be usable: one bad value costs
    # its record, never the day.
    for name in OPTIONAL_TEXT_FIELDS:
        if name in record and not isinstance(record[name], str):
            return f"{name} = {record[name]!r} is not text"
    index = record.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        return f"index = {index!r} is not an integer >= 0"
    embedding = record.get("embedding")
    if embedding is not None and not (
        isinstance(embedding, list) and embedding and all(_finite(value) for value in embedding)
    ):
        return f"embedding = {str(embedding)[:40]!r} is not a list of finite numbers"
    return ""


def stages_logged(reader: PredictionLogReader, day: dt.date) -> list[str]:
    """The deployment stages with a log file of `day`, in LOG_STAGES order (found by file name, nothing read)."""
    prefix = day.isoformat()
    found = {file_stage(name) for name in reader.names() if name.startswith(prefix)}
    return [stage for stage in LOG_STAGES if stage in found]


def read_day(reader: PredictionLogReader, day: dt.date, stage: str | None = None) -> DayLog:
    """Every record in the files of `day` (named by the UTC day they were opened) of deployment `stage` (by file
    name; None: every stage), with empty files, unreadable files and malformed records counted and named instead
    of failing the read."""
    prefix = day.isoformat()
    log = DayLog(
        day=day,
        records=pd.DataFrame(columns=[*TEXT_FIELDS, *NUMERIC_FIELDS, "request_id", "index", "timestamp", "embedding"]),
    )
    rows: list[dict] = []
    for name in reader.names():
        if not name.startswith(prefix) or (stage is not None and file_stage(name) != stage):
            continue
        log.files.append(name)
        try:
            records = reader.read(name)
        except (OSError, ValueError, UnicodeDecodeError) as error:
            # A file that cannot be read at all (not text, gone): named with the error.
            log.unreadable_files[name] = f"{type(error).__name__}: {error}"
            continue
        bad = list(getattr(records, "bad_lines", []))
        if bad:
            # One damaged line costs that line, not the file.
            log.bad_lines[name] = bad
        cut = getattr(records, "cut_line", 0)
        if cut:
            log.cut_lines[name] = (cut, bool(getattr(records, "writer_gone", True)))
        if not records and not bad:
            log.empty_files.append(name)
        for record in records:
            problem = record_problem(record)
            if problem:
                log.malformed_records += 1
                if len(log.malformed_examples) < _EXAMPLES:
                    log.malformed_examples.append(f"{name}: {problem}")
                continue
            row = {key: record[key] for key in (*TEXT_FIELDS, *NUMERIC_FIELDS)}
            # Which answer it was (logs written before request ids have none): what feedback names.
            # Every field below was checked by record_problem.
            row["request_id"], row["index"] = record.get("request_id", ""), record.get("index", 0)
            row["timestamp"] = record.get("timestamp", "")
            # The model's embedding, on the sampled records that carry one.
            row["embedding"] = record.get("embedding")
            rows.append(row)
    if rows:
        log.records = pd.DataFrame(rows)
    return log
