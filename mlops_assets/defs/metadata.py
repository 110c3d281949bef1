"""Helpers that turn library results into Dagster metadata a person can read."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import dagster as dg


def png_markdown(png: bytes, alt: str) -> dg.MarkdownMetadataValue:
    """An inline PNG the Dagster UI renders in the asset's metadata."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> dg.MarkdownMetadataValue:
    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))
