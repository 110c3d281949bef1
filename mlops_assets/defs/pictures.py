"""Small pictures the Dagster UI shows in place on an asset's page.

The UI renders a Markdown value in place only while it is under 1,000 characters; a full plot embedded as a data URI
is longer and sits behind a "[Show Markdown]" link. These thumbnails (a few hundred bytes: a 2- or 4-bit palette
PNG drawn with Pillow) fit, so the shape of the training curves and of the confusion matrix reads at first sight;
the full plots and the numbers (tables) are beside them.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import dagster as dg
from PIL import Image, ImageDraw

# Dagster's webapp: Markdown metadata under this many characters is rendered in place.
INLINE_MARKDOWN_LIMIT = 1000
_WHITE, _TRAIN, _VALIDATION, _FRAME = 0, 1, 2, 3
_PALETTE = [255, 255, 255, 31, 119, 180, 255, 127, 14, 190, 190, 190]


def _png(image: Image.Image, bits: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True, bits=bits)
    return buffer.getvalue()


def _markdown(caption: str, alt: str, png: bytes) -> str:
    return f"{caption}\n\n![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})"


def _panel(draw: ImageDraw.ImageDraw, left: int, width: int, height: int, series, low: float, high: float) -> None:
    """One framed chart at x = `left`: each (values, colour) as a line scaled from `low` to `high`."""
    draw.rectangle([left, 0, left + width - 1, height - 1], outline=_FRAME)
    span = (high - low) or 1.0
    for values, colour in series:
        if len(values) == 1:
            values = [values[0], values[0]]
        step = (width - 8) / (len(values) - 1)
        points = [(left + 4 + i * step, height - 4 - (v - low) / span * (height - 8)) for i, v in enumerate(values)]
        draw.line(points, fill=colour, width=2)


def training_curves_thumbnail(history: Sequence[dict]) -> dg.MarkdownMetadataValue:
    """Loss (left) and accuracy (right, 0 to 1) per epoch, training blue and validation orange, in place."""
    loss = [[r["train_loss"] for r in history], [r["val_loss"] for r in history]]
    accuracy = [[r["train_accuracy"] for r in history], [r["val_accuracy"] for r in history]]
    caption = "Loss (left) and accuracy (right) per epoch: training blue, validation orange."
    # Smaller until it fits: noisy curves compress worse (the two lines of a few jagged epochs fill 80 x 40 panels
    # past the limit; 48 x 24 holds any curves, measured on random ones of 2 to 300 epochs).
    for width, height in ((150, 70), (110, 52), (80, 40), (64, 32), (48, 24)):
        image = Image.new("P", (2 * width + 6, height), _WHITE)
        image.putpalette(_PALETTE)
        draw = ImageDraw.Draw(image)
        _panel(
            draw, 0, width, height, zip(loss, (_TRAIN, _VALIDATION), strict=True), 0.0, max(max(loss[0]), max(loss[1]))
        )
        _panel(draw, width + 6, width, height, zip(accuracy, (_TRAIN, _VALIDATION), strict=True), 0.0, 1.0)
        markdown = _markdown(caption, "training curves", _png(image, 2))
        if len(markdown) < INLINE_MARKDOWN_LIMIT:
            return dg.MetadataValue.md(markdown)
    return dg.MetadataValue.md(markdown)  # not met by any curves measured: still there, behind the UI's link


def confusion_thumbnail(matrix: Sequence[Sequence[int]]) -> dg.MarkdownMetadataValue:
    """Each true class's row (top to bottom) shaded by the share predicted as each class (left to right): a dark
    diagonal is a good model. Cells shrink until the picture fits in place (many classes, scattered errors)."""
    classes = max(len(matrix), 1)
    shades = []
    for row in matrix:
        total = sum(row) or 1
        # 16 grey levels, white = none of the row, black = all of it.
        shades.append([255 - round(count / total * 15) * 17 for count in row])
    grid = Image.new("L", (classes, classes))
    grid.putdata([value for row in shades for value in row])
    caption = "Rows: true class; columns: predicted class (in the table's order); darker = more of the row."
    for cell in sorted({max(2, 200 // classes), max(2, 120 // classes), max(2, 60 // classes), 2}, reverse=True):
        image = grid.resize((classes * cell, classes * cell), Image.Resampling.NEAREST).quantize(16)
        markdown = _markdown(caption, "confusion matrix", _png(image, 4))
        if len(markdown) < INLINE_MARKDOWN_LIMIT:
            break
    return dg.MetadataValue.md(markdown)  # at the smallest size too large: still there, behind the UI's link
