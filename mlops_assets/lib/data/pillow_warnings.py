"""Pillow's warnings about a file, collected for the code reading it instead of printed on stderr.

Pillow reports damage it can step over (an EXIF directory that ends early, tag data past the end of the file, a
malformed MPO index, an invalid APNG) with `warnings.warn` and carries on. The image policy turns what it collects
here into the file's refusal reason, so nothing is printed and training and serving refuse such a file alike.

`warnings.catch_warnings` cannot be used for this: it swaps process-wide state and restores it on exit, so two
threads reading files at once (the service decodes on its event loop and in worker threads) could lose warnings or
leave them captured for good, and swapping per file is slow next to reading a small image. Instead one hook is
installed for the whole process the first time a file is read (and again if something else, such as a test runner,
replaced it since): Pillow's warnings always reach it (the "always" action, so a repeat is not dropped as already
shown), and each goes to the collector of the thread that raised it. Where no collector is open, it is shown as
before; other warnings are not touched.
"""

from __future__ import annotations

import os
import threading
import warnings
from types import TracebackType

_PILLOW_FOLDER = f"{os.sep}PIL{os.sep}"
_lock = threading.Lock()
_local = threading.local()
_previous_showwarning = warnings.showwarning
_filter: tuple | None = None


def _show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001 - warnings' signature
    caught = getattr(_local, "caught", None)
    if caught is not None and _PILLOW_FOLDER in str(filename):
        caught.append(warnings.WarningMessage(message, category, filename, lineno, file, line))
        return
    _previous_showwarning(message, category, filename, lineno, file, line)


def _ensure_installed() -> None:
    global _previous_showwarning, _filter
    if warnings.showwarning is _show and _filter in warnings.filters:
        return
    with _lock:
        if warnings.showwarning is not _show:
            _previous_showwarning = warnings.showwarning
            warnings.showwarning = _show
        if _filter not in warnings.filters:
            warnings.filterwarnings("always", module=r"PIL(\..*)?$")
            _filter = warnings.filters[0]


class pillow_warnings:  # noqa: N801 - used as a context manager, like warnings.catch_warnings
    """`with pillow_warnings() as caught:` collects the warnings Pillow raises in this thread inside the block, in
    order, in the list `caught`, instead of printing them. Blocks may nest; the innermost collects."""

    def __enter__(self) -> list[warnings.WarningMessage]:
        _ensure_installed()
        self._outer = getattr(_local, "caught", None)
        self._caught: list[warnings.WarningMessage] = []
        _local.caught = self._caught
        return self._caught

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        _local.caught = self._outer
