"""One day of the service's prediction log, read through a small reader interface and checked record by record."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd

# What the service writes per image (lib/serving/prediction_log.prediction_record) and monitoring compares.
NUMERIC_FIELDS = ("confidence", "brightness", "contrast", "width", "height")
TEXT_FIELDS = ("model_version", "label", "format", "mode")
_EXAMPLES = 3


class PredictionLogReader(Protocol):
    """Where the prediction log is read from (a folder, a bucket): file names `<YYYY-MM-DD>...jsonl`, oldest first,
    and one file's records (a last line still being written is left out)."""

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
        if self.malformed_records:
            found.append(
                f"{self.malformed_records} malformed record(s) left out, e.g. {'; '.join(self.malformed_examples)}"
            )
        return found


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
    return ""


def read_day(reader: PredictionLogReader, day: dt.date) -> DayLog:
    """Every record in the files of `day` (named by the UTC day they were opened), with empty files, unreadable
    files and malformed records counted and named instead of failing the read."""
    prefix = day.isoformat()
    log = DayLog(day=day, records=pd.DataFrame(columns=[*TEXT_FIELDS, *NUMERIC_FIELDS]))
    rows: list[dict] = []
    for name in reader.names():
        if not name.startswith(prefix):
            continue
        log.files.append(name)
        try:
            records = reader.read(name)
        except (OSError, ValueError, UnicodeDecodeError) as error:
            # A damaged line in the middle (a disk that filled up, an edited file): named, not guessed around.
            log.unreadable_files[name] = f"{type(error).__name__}: {error}"
            continue
        if not records:
            log.empty_files.append(name)
        for record in records:
            problem = record_problem(record)
            if problem:
                log.malformed_records += 1
                if len(log.malformed_examples) < _EXAMPLES:
                    log.malformed_examples.append(f"{name}: {problem}")
                continue
            rows.append({key: record[key] for key in (*TEXT_FIELDS, *NUMERIC_FIELDS)})
    if rows:
        log.records = pd.DataFrame(rows)
    return log
