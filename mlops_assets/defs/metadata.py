"""Helpers that turn library results into Dagster metadata a person reads in the UI without a click.

The asset page shows text, numbers, links and table metadata in place; Markdown longer than 1,000 characters (an
embedded picture) sits behind a "[Show Markdown]" link, so every picture also has its numbers as a table. Numbers
are plain int/float metadata, which Dagster plots across materializations.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from pathlib import Path

import dagster as dg

from mlops_assets import settings

# Dagster's table column types (the UI shows them in the schema).
_TYPES = {bool: "bool", int: "int", float: "float", str: "string"}


def png_markdown(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    """A PNG embedded in Markdown (the UI opens it from a "[Show Markdown]" link)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> dg.MarkdownMetadataValue:
    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def _column_type(values: Sequence[object]) -> str:
    kinds = {type(value) for value in values if value is not None}
    if kinds == {int, float}:
        return "float"
    return _TYPES.get(next(iter(kinds)), "string") if len(kinds) == 1 else "string"


def table(
    rows: Sequence[Mapping[str, object]], descriptions: Mapping[str, str], columns: Sequence[str] | None = None
) -> dg.TableMetadataValue:
    """`rows` as Dagster table metadata: one column per key of `descriptions` (in that order, or `columns`'), typed
    from the values (bool, int, float, else string), each described; floats are rounded to 4 decimals to read."""
    names = list(columns or descriptions)

    def value(raw: object) -> object:
        if isinstance(raw, float):
            return round(raw, 4)
        return raw if isinstance(raw, bool | int | str) or raw is None else str(raw)

    records = [{name: value(row.get(name)) for name in names} for row in rows]
    schema = dg.TableSchema(
        columns=[
            dg.TableColumn(name, _column_type([record[name] for record in records]), description=descriptions.get(name))
            for name in names
        ]
    )
    return dg.MetadataValue.table(records=[dg.TableRecord(record) for record in records], schema=schema)


def home_path(path: str | Path) -> dg.PathMetadataValue | dg.UrlMetadataValue:
    """A location as a person reads it: a URL as a URL, a path under MLOPS_HOME relative to it
    (`artifacts/...`), any other path as it is. `resolve_home_path` turns it back into a path."""
    text = str(path)
    if "://" in text:
        return dg.MetadataValue.url(text)
    try:
        return dg.MetadataValue.path(str(Path(text).resolve().relative_to(settings.mlops_home().resolve())))
    except ValueError:
        return dg.MetadataValue.path(text)


def resolve_home_path(value: str) -> Path:
    """The path `home_path` recorded: relative ones are under this MLOPS_HOME (absolute ones, older records, stay)."""
    return settings.mlops_home() / value
