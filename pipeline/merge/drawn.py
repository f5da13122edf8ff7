"""Cells of the sheets openpyxl draws whole (Summary, Insights): values, styles, small tables.

Text stays text: a string is stored as a string even when it starts with "=", "+", "-" or
"@", and loses only what a workbook cannot hold (`cells.fit_text`), counted in `Changes` like
every other cell. None, "", NaN and infinities are no cell at all, as on the streamed sheets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from openpyxl.cell import Cell
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.merge.cells import Changes, fit_text

COUNT, SHARE, RUPEES, DECIMAL = "#,##0", "0.0%", "#,##0", "#,##0.0"
TITLE = Font(bold=True, size=15)
HEADING = Font(bold=True, size=12, color="1F4E79")
BOLD = Font(bold=True)
HEADER_FILL = PatternFill("solid", fgColor="DDEBF7")
NOTICE_FILL = PatternFill("solid", fgColor="FCE4D6")  # orange: read this first
GOOD_FILL = PatternFill("solid", fgColor="E2EFDA")
LINE_POINTS = 15.0  # a row's height in points
WRAP = Alignment(wrap_text=True, vertical="top")
LEFT = Alignment(horizontal="left", vertical="top")


def put(
    ws: Worksheet,
    row: int,
    column: int,
    value: object,
    changes: Changes,
    *,
    fmt: str | None = None,
    font: Font | None = None,
) -> Cell:
    """Write `value` at (row, column): see the module docstring."""
    cell = ws.cell(row=row, column=column)
    if font is not None:
        cell.font = font
    if value is None or value == "" or (isinstance(value, float) and not math.isfinite(value)):
        return cell
    if isinstance(value, bool | int | float):
        cell.value = value
        if fmt is not None and not isinstance(value, bool):
            cell.number_format = fmt
        return cell
    cell.value = fit_text(value if isinstance(value, str) else str(value), changes)
    cell.data_type = "s"  # openpyxl would take "=..." for a formula
    return cell


def set_up(ws: Worksheet, widths: Sequence[float], *, landscape: bool = False) -> None:
    """Column widths in characters, from column A; no grid lines; printed one page wide."""
    for i, width in enumerate(widths, 1):
        ws.column_dimensions[get_column_letter(i)].width = width
    ws.sheet_view.showGridLines = False
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0  # as many pages down as it takes
    ws.page_setup.orientation = "landscape" if landscape else "portrait"


def header_row(ws: Worksheet, row: int, names: Sequence[str], changes: Changes) -> None:
    """Bold column names on a light fill, from column A, wrapped if long."""
    lines = 1
    for column, name in enumerate(names, 1):
        cell = put(ws, row, column, name, changes, font=BOLD)
        cell.fill = HEADER_FILL
        cell.alignment = Alignment(wrap_text=True, vertical="bottom")
        lines = max(lines, lines_of(name, ws.column_dimensions[get_column_letter(column)].width))
    fit_height(ws, row, lines)


def lines_of(text: str, chars: float | None) -> int:
    """Lines `text` takes wrapped in `chars` characters, roughly (bold and wide letters
    included)."""
    width = max(chars or 8.43, 1.0)  # Excel's default column width
    return sum(max(1, math.ceil(len(part) * 1.15 / width)) for part in text.split("\n"))


def fit_height(ws: Worksheet, row: int, lines: int, size: float = 11) -> None:
    """Make `row` tall enough for `lines` lines of `size`-point text (Excel does not grow a
    row for wrapped text that openpyxl writes)."""
    if lines > 1 or size > 11:
        ws.row_dimensions[row].height = LINE_POINTS * lines * max(size, 11) / 11


def table(
    ws: Worksheet,
    row: int,
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    formats: Sequence[str | None],
    changes: Changes,
) -> int:
    """Write a header and `rows` from column A at `row`, each column in its format; return
    the first row after the table."""
    header_row(ws, row, header, changes)
    for r, values in enumerate(rows, row + 1):
        for column, (value, fmt) in enumerate(zip(values, formats, strict=True), 1):
            put(ws, r, column, value, changes, fmt=fmt)
    return row + 1 + len(rows)


def wide_text(
    ws: Worksheet,
    row: int,
    first: int,
    last: int,
    text: str,
    changes: Changes,
    *,
    chars: float,
    fill: PatternFill | None = None,
    font: Font | None = None,
) -> None:
    """`text` in one cell across columns `first`..`last` (`chars` wide in all), wrapped, its
    row as tall as the lines need: long text stays on the page instead of running sideways."""
    cell = put(ws, row, first, text, changes, font=font)
    cell.alignment = WRAP
    if fill is not None:
        for column in range(first, last + 1):
            ws.cell(row=row, column=column).fill = fill
    if last > first:
        ws.merge_cells(start_row=row, start_column=first, end_row=row, end_column=last)
    fit_height(ws, row, lines_of(text, chars), font.size if font is not None and font.size else 11)
