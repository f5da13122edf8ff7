"""Worksheets as streamed XML: head (frozen header row, column widths), rows, tail (auto-filter).

A `Sheet` is fed record batches and writes its XML to a sink as it goes. Column widths come
from the header and the first `WIDTH_SAMPLE_ROWS` rows (not from every row), so the first rows
wait until those are in. `SplitSheet` starts `Results 2`, `Results 3`, ... (each with the
header) every `max_rows` data rows.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from itertools import islice

import pyarrow as pa
import pyarrow.compute as pc
from openpyxl.utils import get_column_letter

from pipeline.merge.cells import Changes, Styles, column_cells, display_width, kind_of, value_cell

WIDTH_SAMPLE_ROWS = 100
MIN_WIDTH, MAX_WIDTH = 8, 60
# Arrow string arrays hold at most 2 GiB; rows are encoded in slices that stay far below.
MAX_SLICE_BYTES = 1 << 29

Write = Callable[[bytes | memoryview], object]

_HEAD = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<sheetViews><sheetView workbookViewId="0">'
    '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
    '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
    "</sheetView></sheetViews>"
    '<sheetFormatPr defaultRowHeight="15"/>'
)
_MARGINS = '<pageMargins left="0.75" right="0.75" top="1" bottom="1" header="0.5" footer="0.5"/>'


def head_xml(widths: Sequence[int]) -> str:
    cols = "".join(
        f'<col min="{i}" max="{i}" width="{w}" customWidth="1"/>' for i, w in enumerate(widths, 1)
    )
    return f"{_HEAD}<cols>{cols}</cols><sheetData>"


def tail_xml(filter_ref: str | None) -> str:
    auto_filter = f'<autoFilter ref="{filter_ref}"/>' if filter_ref else ""
    return f"</sheetData>{auto_filter}{_MARGINS}</worksheet>"


def _width(header: str, sample: Sequence[object]) -> int:
    widest = max([len(header), *map(display_width, sample)])
    return min(max(widest + 2, MIN_WIDTH), MAX_WIDTH)


def _header_row(names: Sequence[str], letters: Sequence[str], style: int, changes: Changes) -> str:
    cells = (value_cell(n, f"{x}1", changes, style) for n, x in zip(names, letters, strict=True))
    return f'<row r="1">{"".join(cells)}</row>'


class Sheet:
    """The worksheet `title`, fed record batches with the columns of `columns` in that order;
    its XML goes to `write` as it is made, and `done` is called after the last of it."""

    def __init__(
        self,
        title: str,
        columns: pa.Schema,
        styles: Styles,
        changes: Changes,
        write: Write,
        done: Callable[[], object] = lambda: None,
    ) -> None:
        self.title, self.columns = title, columns
        self.rows = 0
        self.filter_ref: str | None = None
        self._write, self._done = write, done
        self._styles, self._changes = styles, changes
        self._letters = [get_column_letter(i) for i in range(1, len(columns) + 1)]
        self._kinds = [kind_of(f.type) for f in columns]
        self._pending: list[pa.RecordBatch] | None = []  # None once the head is written

    def add(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        first = self.rows + 2  # row 1 is the header
        self.rows += batch.num_rows
        if self._pending is not None:
            self._pending.append(batch)
            if self.rows >= WIDTH_SAMPLE_ROWS:
                self._start()
            return
        self._encode(batch, first)

    def close(self) -> None:
        if self._pending is not None:
            self._start()
        self.filter_ref = f"A1:{self._letters[-1]}{self.rows + 1}"
        self._write(tail_xml(self.filter_ref).encode())
        self._done()

    def _start(self) -> None:
        pending, self._pending = self._pending or [], None
        widths = []
        for i, field in enumerate(self.columns):
            head = (batch.column(i).slice(0, WIDTH_SAMPLE_ROWS) for batch in pending)
            values = (v for column in head for v in column.to_pylist())
            widths.append(_width(field.name, list(islice(values, WIDTH_SAMPLE_ROWS))))
        header = _header_row(self.columns.names, self._letters, self._styles.header, self._changes)
        self._write((head_xml(widths) + header).encode())
        first = 2
        for batch in pending:
            self._encode(batch, first)
            first += batch.num_rows

    def _encode(self, batch: pa.RecordBatch, first: int) -> None:
        """Write `batch` as rows from row number `first`, in slices Arrow can hold."""
        n = batch.num_rows
        worst = 6 * batch.nbytes + 80 * n * batch.num_columns  # "&" grows 5-fold, and tags
        if worst > MAX_SLICE_BYTES and n > 1:
            half = n // 2
            self._encode(batch.slice(0, half), first)
            self._encode(batch.slice(half), first + half)
            return
        rows = pc.cast(pa.array(range(first, first + n), pa.int64()), pa.string())
        cells = [
            column_cells(column, kind, letter, rows, self._styles, self._changes)
            for column, kind, letter in zip(batch.columns, self._kinds, self._letters, strict=True)
        ]
        xml = pc.binary_join_element_wise(
            '<row r="', rows, '">', *cells, "</row>", "", null_handling="replace"
        )
        self._write(_concatenated(xml))


def _concatenated(strings: pa.Array) -> memoryview:
    """The bytes of all the (non-null) strings of a string array, one after the other, without
    a copy: the span of its data buffer between its first and last offsets."""
    _, offsets, data = strings.buffers()
    (start,) = struct.unpack_from("<i", offsets, 4 * strings.offset)
    (end,) = struct.unpack_from("<i", offsets, 4 * (strings.offset + len(strings)))
    return memoryview(data)[start:end]


class SplitSheet:
    """A sheet that goes on in `<title> 2`, `<title> 3`, ... every `max_rows` data rows, each
    with the header. `open_sheet(title, index)` makes the index-th (from 0), when it has a row
    to hold; the first is made at once, so that an empty output still has its header."""

    def __init__(self, title: str, max_rows: int, open_sheet: Callable[[str, int], Sheet]) -> None:
        self._title, self._max, self._open = title, max_rows, open_sheet
        self.sheets: list[Sheet] = [open_sheet(title, 0)]

    @property
    def rows(self) -> int:
        return sum(sheet.rows for sheet in self.sheets)

    def add(self, batch: pa.RecordBatch) -> None:
        start = 0
        while start < batch.num_rows:
            sheet = self.sheets[-1]
            if sheet.rows >= self._max:
                sheet.close()
                index = len(self.sheets)
                sheet = self._open(f"{self._title} {index + 1}", index)
                self.sheets.append(sheet)
            take = min(batch.num_rows - start, self._max - sheet.rows)
            sheet.add(batch.slice(start, take))
            start += take

    def close(self) -> None:
        self.sheets[-1].close()
