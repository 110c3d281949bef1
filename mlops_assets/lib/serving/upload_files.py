"""The multipart file type the services declare: each part read into memory, never spooled to disk."""

from __future__ import annotations

import typing
from pathlib import Path

from pydantic import PlainValidator, WithJsonSchema
from starlette.datastructures import UploadFile


def _upload_bytes(value: typing.Any) -> bytes:
    if isinstance(value, UploadFile):
        return value.file.read()
    raise ValueError("Send each image as a file part (with a filename) in the multipart field 'images'.")


# Declared on `Path` so BentoML parses the field as multipart files; the validator replaces BentoML's own, which
# writes every part to a temporary file on disk (file system calls for every part of every request).
# The two schemas are the ones BentoML gives its own file types: `/schema.json` (validation mode) says "file", which
# is how BentoML's Python clients know to upload a `Path` or PIL image as a multipart file; the OpenAPI document
# (serialization mode) says binary string, the OpenAPI spelling of a file.
InMemoryFile = typing.Annotated[
    Path,
    PlainValidator(_upload_bytes),
    WithJsonSchema({"type": "file", "format": "image"}, mode="validation"),
    WithJsonSchema({"type": "string", "format": "binary"}, mode="serialization"),
]
