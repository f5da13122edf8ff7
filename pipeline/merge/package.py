"""The .xlsx file itself: a zip of XML parts, with the big worksheets written by us.

openpyxl writes every part but the streamed worksheets (workbook, styles, relationships, content
types, document properties, the auto-filters' defined names) from a workbook holding the same
sheets, the streamed ones empty; its styles give the cells' style indexes. Small sheets that
need what openpyxl does well (the Summary's layout, the Insights' charts, with their drawings,
chart parts, relationships and content types) are *drawn*: openpyxl writes them whole, and
their parts go into the zip as it wrote them. The streamed worksheets' XML (sheets.py)
goes to a spool file each, beside the workbook (not in /tmp, which may be memory), and a
finished spool is compressed into the zip on one background thread while the next sheet is
made: zlib and file I/O release the GIL, as Arrow's kernels do.

Why spool, as openpyxl does, and not stream into the zip: a part whose size is known when it is
added gets the zip64 extensions only when it needs them (over 2 GiB), exactly as openpyxl's and
xlsxwriter's files do. Excel is known to ask to repair workbooks whose zip64 fields differ from
what it expects; a part streamed in without a size would need them always.

What this assumes of openpyxl is where the n-th sheet goes (`xl/worksheets/sheet<n>.xml`);
`finish` checks that against the workbook openpyxl wrote and stops if it ever changes. A
streamed sheet has no relationships part, so only a drawn sheet can hold a chart.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.merge.cells import MONEY_FORMAT, Styles

# Deflate level of the parts. Measured on 200,000 rows x 40 columns (328 MB of XML): level 1
# 2.9 s and 68 MB, level 6 (zipfile's default, openpyxl's) 7.3 s and 52 MB. Speed wins: the
# file is 30% bigger, and Excel spends its time parsing, not inflating.
ZIP_LEVEL = 1
COPY_BYTES = 1 << 20


def part_name(position: int) -> str:
    """Where openpyxl puts the sheet at `position` (1 = the first in the book)."""
    return f"xl/worksheets/sheet{position}.xml"


@dataclass(frozen=True)
class Streamed:
    """A sheet whose part was given to `Package.add`; `filter_ref` is its auto-filter range."""

    title: str
    filter_ref: str | None = None


@dataclass(frozen=True)
class Drawn:
    """A sheet openpyxl writes whole: `draw` fills the (empty) worksheet it is given."""

    title: str
    draw: Callable[[Worksheet], object]


class Package:
    """An .xlsx being written to `path`. Give each streamed sheet's part to `add`, as bytes or
    as a spool from `spool()`, in any order; then `finish` with all the sheets in book order,
    or `abort` on an error. Spools live in `path`'s folder."""

    def __init__(self, path: Path, *, compresslevel: int = ZIP_LEVEL) -> None:
        self._folder = path.parent
        self._zip = zipfile.ZipFile(
            path, "w", zipfile.ZIP_DEFLATED, allowZip64=True, compresslevel=compresslevel
        )
        self._book = Workbook()
        self._book.remove(self._book.active)  # the default sheet
        self.styles = _register_styles(self._book)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="xlsx")
        self._queue: deque[Future[Any]] = deque()
        self._spools = contextlib.ExitStack()  # each closed on the thread once compressed in
        self._added: set[int] = set()

    def spool(self) -> IO[bytes]:
        """A new, empty, unnamed temporary file to write a sheet's XML into."""
        return self._spools.enter_context(
            tempfile.TemporaryFile(dir=self._folder, prefix=".xlsx-sheet-")
        )

    def add(self, position: int, part: bytes | IO[bytes]) -> None:
        """Add the part of the streamed sheet at `position` (1 = first in the book): bytes, or
        a spool holding all of it, which is compressed in on the thread, then closed."""
        if position in self._added:
            raise ValueError(f"sheet {position} is already added")
        self._added.add(position)
        self._queue.append(self._pool.submit(self._add_part, part_name(position), part))
        while self._queue and self._queue[0].done():
            self._queue.popleft().result()  # an error on the thread comes out here or in finish

    def finish(self, sheets: Sequence[Streamed | Drawn]) -> None:
        """Add openpyxl's parts for a book of `sheets`, in order, and close the file; the part
        of every streamed sheet, and only theirs, must have been added."""
        streamed = {i for i, sheet in enumerate(sheets, 1) if isinstance(sheet, Streamed)}
        if self._added != streamed:
            raise RuntimeError(f"sheets {sorted(self._added)} added for {sorted(streamed)}")
        for sheet in sheets:
            ws = self._book.create_sheet(sheet.title)
            if isinstance(sheet, Drawn):
                sheet.draw(ws)
            elif sheet.filter_ref:
                ws.auto_filter.ref = sheet.filter_ref
        skeleton = io.BytesIO()
        self._book.save(skeleton)
        ours = [part_name(i) for i in sorted(streamed)]
        every = [part_name(i) for i in range(1, len(sheets) + 1)]
        if [ws.path.lstrip("/") for ws in self._book.worksheets] != every:
            raise RuntimeError("openpyxl no longer names sheet parts sheet<n>.xml; see package.py")
        while self._queue:
            self._queue.popleft().result()
        self._pool.shutdown()
        with zipfile.ZipFile(skeleton) as parts:
            for info in parts.infolist():
                if info.filename not in ours:
                    self._zip.writestr(info, parts.read(info))
        self._zip.close()
        self._spools.close()

    def abort(self) -> None:
        """Stop, close the file whatever state it is in, drop the spools; the caller deletes
        the file."""
        self._pool.shutdown(cancel_futures=True)
        # The error that made us abort is the one to report.
        with contextlib.suppress(OSError, ValueError, zipfile.BadZipFile):
            self._spools.close()
        with contextlib.suppress(OSError, ValueError, zipfile.BadZipFile):
            self._zip.close()

    def _add_part(self, name: str, part: bytes | IO[bytes]) -> None:
        """On the thread: compress `part` into the zip as `name`."""
        source = io.BytesIO(part) if isinstance(part, bytes) else part
        size = source.seek(0, io.SEEK_END)
        source.seek(0)
        # As ZipFile.write decides for a file of known size.
        zip64 = size * 1.05 > zipfile.ZIP64_LIMIT
        with self._zip.open(name, "w", force_zip64=zip64) as out:
            while chunk := source.read(COPY_BYTES):
                out.write(chunk)
        source.close()


def _register_styles(book: Any) -> Styles:
    """Add the money and header styles to `book`; cells refer to them by index."""
    ws = book.create_sheet("styles")  # only to make cells with; never saved
    money = ws.cell(row=1, column=1)
    money.number_format = MONEY_FORMAT
    header = ws.cell(row=1, column=2)
    header.font = Font(bold=True)
    book.remove(ws)
    return Styles(money=money.style_id, header=header.style_id)
