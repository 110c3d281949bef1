"""Remember file hashes by (size, mtime, inode) so rescanning an unchanged dataset reads no file contents.

A touched file (new mtime) is simply hashed again; its content hash, and so the data version, stays the same.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mlops_assets.lib.atomic import atomic_write_text


class FileHashCache:
    """SHA-256 of files, reused while a file's size, mtime and inode are unchanged."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._entries: dict[str, list] = {}
        if path is not None and path.exists():
            self._entries = json.loads(path.read_text())
        self._seen: dict[str, list] = {}

    def sha256(self, file: Path, stat: os.stat_result) -> str:
        key = str(file)
        signature = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
        cached = self._entries.get(key)
        if cached is not None and cached[:3] == signature:
            digest = cached[3]
        else:
            with file.open("rb") as handle:
                digest = hashlib.file_digest(handle, "sha256").hexdigest()
        self._seen[key] = [*signature, digest]
        return digest

    def save(self) -> None:
        """Keep only files seen in this scan; write atomically."""
        if self._path is None:
            return
        # A partial file of this process: two scans of one dataset at once never write the same temporary file.
        atomic_write_text(self._path, json.dumps(self._seen))
