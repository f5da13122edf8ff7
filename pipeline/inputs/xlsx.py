"""Read an .xlsx input: the sheet to use, its rows with their row numbers, and what is unsafe.

Owns everything about workbooks as input: a workbook is checked before it is parsed (a zip
bomb is refused by the sizes its zip index declares, an XML bomb by `defusedxml`, which
openpyxl uses when it is installed), the sheet is picked (`sheet = ""`: the first *visible*
one), and rows come with the sheet's own row numbers, so messages say the row a person sees in
Excel. A formula cell without a saved value (a workbook written by a program, never opened in
Excel) reads as `FORMULA`, for the checker to mark the row invalid instead of reading 0.
Every message names the file and the sheet.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]

from pipeline.errors import InputError

FORMULA = "\0formula"
"""A cell's text when it holds a formula whose value was never saved."""
MAX_UNPACKED_BYTES = 8 << 30
"""Largest total size of the workbook's parts once unpacked: ~16 times what Excel's own
limit of 1,048,576 rows of ten columns takes. More is a zip bomb, not a table of users."""
MAX_RATIO = 200
"""Largest unpacked / packed size of one part past `RATIO_FLOOR_BYTES`. Sheet XML packs
10-30x (each cell carries its own address, so even a sheet of one repeated value stays far
below 100x); 200-fold and more (deflate's limit is ~1,000x) is made on purpose."""
RATIO_FLOOR_BYTES = 64 << 20


def check_archive(source: Path) -> None:
    """Refuse a workbook whose parts would unpack to absurd sizes, before parsing any."""
    try:
        with zipfile.ZipFile(source) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise bad_workbook(source, exc) from exc
    total = sum(p.file_size for p in parts)
    swollen = [
        p
        for p in parts
        if p.file_size > RATIO_FLOOR_BYTES and p.file_size > MAX_RATIO * max(p.compress_size, 1)
    ]
    if total > MAX_UNPACKED_BYTES or swollen:
        what = swollen[0].filename if swollen else "its parts"
        raise InputError(
            f"{source}: refused: {what} would unpack to "
            f"{(swollen[0].file_size if swollen else total) >> 20} MB (a zip bomb?); "
            "save the table again from Excel, or as CSV"
        )


@contextlib.contextmanager
def open_workbook(source: Path, *, formulas: bool = False) -> Iterator[Any]:
    """The workbook, read-only; `formulas`: cells give their formulas, not saved values."""
    from openpyxl import load_workbook  # ~0.1 s, for XLSX input only

    check_archive(source)
    try:
        with warnings.catch_warnings():  # openpyxl warns about styles and extensions it drops
            warnings.simplefilter("ignore")
            workbook = load_workbook(source, read_only=True, data_only=not formulas)
    except Exception as exc:  # openpyxl parses untrusted files; a damaged one raises anything
        raise bad_workbook(source, exc) from exc
    try:
        yield workbook
    finally:
        workbook.close()


def bad_workbook(source: Path, exc: BaseException, sheet: str | None = None) -> InputError:
    where = f"{source}: sheet {sheet!r}" if sheet else str(source)
    cause: BaseException | None = exc
    while cause is not None:  # openpyxl wraps the parser's error in its own
        if isinstance(cause, DefusedXmlException):
            # Entity declarations are how XML bombs ("billion laughs") are built.
            return InputError(
                f"{where}: refused: the workbook's XML declares entities (an XML bomb?)"
            )
        cause = cause.__cause__ or cause.__context__
    text = " ".join(str(exc).split())[:300]
    return InputError(f"{where}: cannot read as an .xlsx workbook; is it damaged? ({text})")


def sheet_title(source: Path, workbook: Any, sheet: str | None) -> str:
    """The sheet to read: `sheet`, or the first visible one (a hidden first sheet is skipped:
    the user sees, and means, the one Excel opens on)."""
    names: list[str] = workbook.sheetnames
    if sheet is not None:
        if sheet not in names:
            raise InputError(f"{source}: sheet {sheet!r} not found (sheets: {', '.join(names)})")
        return sheet
    for name in names:
        if workbook[name].sheet_state == "visible":
            return name
    raise InputError(f"{source}: every sheet is hidden; name one with [input] sheet")


def sheet_rows(source: Path, workbook: Any, title: str) -> Iterator[tuple[Any, ...]]:
    """Every row of the sheet from row 1 on, blank ones included, as tuples of values."""
    worksheet = workbook[title]
    if not hasattr(worksheet, "reset_dimensions"):
        raise InputError(f"{source}: sheet {title!r} is a chart, not a table")
    # Read-only mode trusts the size the writing program recorded, and some record it wrong
    # (LibreOffice: 65,536 rows; others A1:A1); without this, rows past it would be dropped.
    worksheet.reset_dimensions()
    rows = worksheet.iter_rows(values_only=True)
    while True:
        try:
            yield next(rows)
        except StopIteration:
            return
        except Exception as exc:  # a damaged sheet: see open_workbook
            raise bad_workbook(source, exc, title) from exc


@contextlib.contextmanager
def read_sheet(
    source: Path, sheet: str | None
) -> Iterator[tuple[str, Iterator[tuple[int, tuple[str | None, ...]]]]]:
    """(the sheet's title, its rows that are not blank as (row number, cells as text)).

    The workbook is read twice in step, for the saved values and for the formulas: openpyxl
    gives one or the other, and a formula without a saved value reads as an empty cell.
    """
    with open_workbook(source) as values:
        title = sheet_title(source, values, sheet)
        rows = sheet_rows(source, values, title)
        if not _has_formulas(values, title):  # most sheets: read once
            yield title, _numbered(zip(rows, itertools.repeat(())))
            return
        with open_workbook(source, formulas=True) as formulas:
            # The same XML read twice: the same rows, in step.
            pairs = zip(rows, sheet_rows(source, formulas, title), strict=False)
            yield title, _numbered(pairs)


_FORMULA_TAG = re.compile(rb"<(?:\w+:)?f[\s>/]")


def _has_formulas(workbook: Any, title: str) -> bool:
    """Whether the sheet's XML holds a formula: a scan of the raw bytes (~20x faster than
    parsing them), so that sheets without formulas are parsed once, not twice."""
    try:
        part = workbook._archive.open(workbook[title]._worksheet_path)  # openpyxl's own
    except (AttributeError, KeyError, OSError):
        return True  # cannot tell: read the formulas too
    tail = b""
    with part:
        while chunk := part.read(1 << 20):
            if _FORMULA_TAG.search(tail + chunk):
                return True
            tail = chunk[-16:]
    return False


def _numbered(
    pairs: Iterator[tuple[tuple[Any, ...], tuple[Any, ...]]],
) -> Iterator[tuple[int, tuple[str | None, ...]]]:
    for number, (row, formula_row) in enumerate(pairs, start=1):
        cells = tuple(
            FORMULA
            if v is None and i < len(formula_row) and _is_formula(formula_row[i])
            else _cell_text(v)
            for i, v in enumerate(row)
        )
        if any(c is not None for c in cells):
            yield number, cells


def _is_formula(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("=")


def header_text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _cell_text(value: Any) -> str | None:
    """An xlsx cell as the text a CSV export would hold: 1234.0 -> "1234", 12.5 -> "12.5"."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)  # bool and the like: not a number, reported as such
