"""The .xlsx file itself: a zip of XML parts, with the worksheets written as they are made.

openpyxl writes every part but the worksheets (workbook, styles, relationships, content types,
document properties, the auto-filters' defined names) from a write-only workbook holding the
same sheets, empty; its styles give the cells' style indexes. This module streams the
worksheets' own XML (sheets.py) into the zip, each part compressed as it comes, on one
background thread: zlib and file writes release the GIL, as Arrow's kernels do, so compressing
one batch overlaps encoding the next, and at most `QUEUE_DEPTH` batches wait in memory.

What it assumes of openpyxl is where the n-th sheet goes (`xl/worksheets/sheet<n>.xml`);
`finish` checks that against the workbook openpyxl wrote and stops if it ever changes.
"""

from __future__ import annotations

import io
import zipfile
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font

from pipeline.merge.cells import MONEY_FORMAT, Styles

# Deflate level of the parts. Measured on 200,000 rows x 40 columns (328 MB of XML): level 1
# 2.9 s and 68 MB, level 6 (zipfile's default, openpyxl's) 7.3 s and 52 MB. Speed wins: the
# file is 30% bigger, and Excel spends its time parsing, not inflating.
ZIP_LEVEL = 1
QUEUE_DEPTH = 8  # chunks of XML waiting for the background thread, at most
COPY_BYTES = 1 << 20


def part_name(position: int) -> str:
    """Where openpyxl puts the sheet at `position` (1 = the first in the book)."""
    return f"xl/worksheets/sheet{position}.xml"


class Package:
    """An .xlsx being written to `path`. Write each sheet's part with `stream` or `add`, one at
    a time, then `finish` with the sheets in book order; `abort` on an error."""

    def __init__(self, path: Path, *, compresslevel: int = ZIP_LEVEL) -> None:
        self._zip = zipfile.ZipFile(
            path, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=compresslevel
        )
        self._book = Workbook(write_only=True)
        self.styles = _register_styles(self._book)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="xlsx")
        self._queue: deque[Future[Any]] = deque()
        self._open: IO[bytes] | None = None  # the part being written, on the thread
        self._written: set[int] = set()

    def stream(
        self, position: int
    ) -> tuple[Callable[[bytes | memoryview], None], Callable[[], None]]:
        """Start the part of the sheet at `position`; returns `write(data)` and `done()`."""
        self._start(position)
        return (lambda data: self._call(self._write, data)), (lambda: self._call(self._close))

    def add(self, position: int, source: bytes | IO[bytes]) -> None:
        """Write the whole part of the sheet at `position` from bytes or a readable file."""
        self._start(position)
        reader = io.BytesIO(source) if isinstance(source, bytes) else source
        while chunk := reader.read(COPY_BYTES):
            self._call(self._write, chunk)
        self._call(self._close)

    def finish(self, sheets: Sequence[tuple[str, str | None]]) -> None:
        """Add openpyxl's parts for a book of `sheets` (title, auto-filter range or None), in
        order, and close the file; every sheet's part must have been written."""
        if self._written != set(range(1, len(sheets) + 1)):
            raise RuntimeError(f"sheets {sorted(self._written)} written for {len(sheets)} sheets")
        for title, filter_ref in sheets:
            ws = self._book.create_sheet(title)
            if filter_ref:
                ws.auto_filter.ref = filter_ref
        skeleton = io.BytesIO()
        self._book.save(skeleton)
        wanted = [part_name(i) for i in range(1, len(sheets) + 1)]
        if [ws.path.lstrip("/") for ws in self._book.worksheets] != wanted:
            raise RuntimeError("openpyxl no longer names sheet parts sheet<n>.xml; see package.py")
        with zipfile.ZipFile(skeleton) as parts:
            for info in parts.infolist():
                if info.filename not in wanted:
                    self._call(self._zip.writestr, info, parts.read(info))
        self._drain()
        self._pool.shutdown()
        self._zip.close()

    def abort(self) -> None:
        """Stop, and close the file whatever state it is in; the caller deletes it."""
        self._pool.shutdown(cancel_futures=True)
        for step in (self._open.close if self._open else None, self._zip.close):
            try:
                if step is not None:
                    step()
            except (OSError, ValueError, zipfile.BadZipFile):
                pass  # the error that made us abort is the one to report

    def _start(self, position: int) -> None:
        if position in self._written:
            raise ValueError(f"sheet {position} is already written")
        self._written.add(position)
        self._call(self._open_part, part_name(position))

    def _call(self, fn: Callable[..., object], *args: Any) -> None:
        """Run `fn(*args)` on the thread after what is queued; wait while the queue is full.
        An error on the thread comes out here, on a later call, or in `finish`."""
        self._queue.append(self._pool.submit(fn, *args))
        while self._queue and (len(self._queue) > QUEUE_DEPTH or self._queue[0].done()):
            self._queue.popleft().result()

    def _drain(self) -> None:
        while self._queue:
            self._queue.popleft().result()

    # On the thread:
    def _open_part(self, name: str) -> None:
        self._open = self._zip.open(name, "w", force_zip64=True)

    def _write(self, data: bytes | memoryview) -> None:
        assert self._open is not None
        self._open.write(data)

    def _close(self) -> None:
        assert self._open is not None
        self._open.close()
        self._open = None


def _register_styles(book: Any) -> Styles:
    """Add the money and header styles to `book`; cells refer to them by index."""
    ws = book.create_sheet("styles")  # only to make cells with; never saved
    money = WriteOnlyCell(ws)
    money.number_format = MONEY_FORMAT
    header = WriteOnlyCell(ws)
    header.font = Font(bold=True)
    book.remove(ws)
    return Styles(money=money.style_id, header=header.style_id)
