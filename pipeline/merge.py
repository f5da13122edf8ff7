"""The workbook: result shards merged into `Summary`, `Results` (`Results 2`, ...) and `Failures`.

This module owns the workbook's layout (CONTRACT.md, "The output folder") and how a value
becomes a cell: ids and every other string are text, never a formula; numbers are numbers
(money with a `#,##0.00` format); null is an empty cell; characters XML cannot hold are removed
and strings past Excel's 32,767 characters are cut, both counted on the Summary sheet.

Shards are read one at a time, one record batch at a time, so memory stays flat whatever the
row count. The workbook is written through `store.atomic_path`: a kill or an error leaves the
old file or the new one.

Why cells are written as XML here and not with `ws.append`: openpyxl spends about ten Python
calls per cell, more for a styled one. A number format on each money cell through its public
API measured 0.43x the rows/s of a bare, unformatted `ws.append` loop; rows built per batch as
one XML string, which lxml parses and writes in C, measure 1.8x it (200,000 rows of 40
columns, `MERGE_BENCH=200000 pytest tests/test_merge.py -k speed -s`); 1.0x when openpyxl
runs without lxml. `_RowStream` is the one place that reaches into openpyxl's write-only
worksheet to do it.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter
from openpyxl.xml.functions import fromstring

from pipeline import schema, store
from pipeline.errors import RunStateError

log = logging.getLogger(__name__)

SUMMARY, RESULTS, FAILURES = "Summary", "Results", "Failures"
EXCEL_MAX_DATA_ROWS = 1_048_575  # Excel's 1,048,576 rows, less the header
MAX_CELL_CHARS = 32_767  # Excel's limit, in UTF-16 units as Excel counts them
TRUNCATED_SUFFIX = "…[truncated]"
MONEY_FORMAT = "#,##0.00"
WIDTH_SAMPLE_ROWS = 100  # column widths come from the header and this many first rows
MIN_WIDTH, MAX_WIDTH = 8, 60
BATCH_ROWS = 2048  # rows per record batch read and per XML chunk written

RESULT_STATES = (schema.OK, schema.NO_CARDS)
FAILURE_COLUMNS = (schema.STATUS, schema.HTTP_STATUS, schema.ATTEMPTS, schema.ERROR)

# What XML 1.0 cannot hold: openpyxl's ILLEGAL_CHARACTERS_RE (C0 controls but tab, LF, CR)
# plus lone surrogates and U+FFFE/U+FFFF, which it lets through and the file then chokes on.
_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

# Cell kinds: how a column's Python values become cells.
# How a column's Python values become cells: str as text, anything else as its str() as text,
# a number in General format, a number in MONEY_FORMAT, a bool, or each value by its own type.
_TEXT, _OTHER, _NUMBER, _MONEY, _BOOL, _ANY = "text", "other", "number", "money", "bool", "any"

Column = tuple[str, str]  # header, kind
Encoder = Callable[[Sequence[Any], range], list[str]]


@dataclass(frozen=True)
class MergeReport:
    """What `write_workbook` wrote. `seconds` is wall time; counts are rows unless named cells."""

    ok: int
    no_cards: int
    invalid: int
    failed: int
    total: int
    results_rows: int
    results_sheets: int
    failures: int
    cells_sanitized: int
    cells_truncated: int
    seconds: float


@dataclass
class _Changes:
    """Cells whose string had to change to fit in a workbook."""

    sanitized: int = 0
    truncated: int = 0


@dataclass(frozen=True)
class _Styles:
    money: int
    header: int
    changes: _Changes = field(default_factory=_Changes)


def write_workbook(
    dest: Path,
    shard_paths: Sequence[Path],
    *,
    id_column: str,
    value_columns: Sequence[str],
    facts: Sequence[tuple[str, object]],
    expected_rows: int | None = None,
    max_rows_per_sheet: int = EXCEL_MAX_DATA_ROWS,
    clock: Callable[[], float] = time.perf_counter,
) -> MergeReport:
    """Write the workbook `dest` from result shards given in input order.

    `facts` are (key, value) lines for the Summary sheet, formatted by the caller.
    `expected_rows`: rows the run's input has; when the shards hold fewer, Summary says the run
    is unfinished. None: not known, say nothing. `max_rows_per_sheet`: data rows per Results
    sheet before the next one (`Results 2`, ...) starts.
    """
    if not 1 <= max_rows_per_sheet <= EXCEL_MAX_DATA_ROWS:
        raise ValueError(
            f"max_rows_per_sheet ({max_rows_per_sheet}) must be from 1 to {EXCEL_MAX_DATA_ROWS}"
        )
    started = clock()
    result_columns = _result_columns(shard_paths, id_column, value_columns)
    with store.atomic_path(dest) as tmp:
        wb = Workbook(write_only=True)
        try:
            summary_ws = wb.create_sheet(SUMMARY)  # first in the book, filled last
            styles = _register_styles(summary_ws)
            results = _SplitSheet(wb, RESULTS, result_columns, styles, max_rows_per_sheet)
            failures = _Sheet(wb.create_sheet(FAILURES), _failure_columns(id_column), styles)
            counts = _stream_shards(shard_paths, results, failures)
            results.close()
            failures.close()
            lines = _summary_lines(counts, facts, results.count, styles.changes, expected_rows)
            _write_summary(summary_ws, lines, styles)
            wb.save(tmp)
        except BaseException:
            _discard(wb)
            raise
    return MergeReport(
        ok=counts[schema.OK],
        no_cards=counts[schema.NO_CARDS],
        invalid=counts[schema.INVALID_STATE],
        failed=counts[schema.FAILED],
        total=sum(counts.values()),
        results_rows=results.rows,
        results_sheets=results.count,
        failures=failures.rows,
        cells_sanitized=styles.changes.sanitized,
        cells_truncated=styles.changes.truncated,
        seconds=clock() - started,
    )


def read_outcome_counts(shard_paths: Sequence[Path]) -> dict[str, int]:
    """Rows by status over the shards, reading only the `status` column. Every state of
    `schema.STATES` is present (0 if none); an unexpected status is counted under its own name,
    a missing one under "unknown"."""
    counts: Counter[str] = Counter({state: 0 for state in schema.STATES})
    for path in shard_paths:
        for batch in _batches(path, [schema.STATUS]):
            _count(batch.column(0), counts)
    return dict(counts)


def _failure_columns(id_column: str) -> list[Column]:
    outcome = [(n, _kind(t)) for n, t in schema.OUTCOME_FIELDS if n in FAILURE_COLUMNS]
    return [(id_column, _TEXT), *outcome]


def _unfinished(found: int, expected: int) -> str:
    return (
        f"Unfinished run: {found:,} of {expected:,} rows have results; "
        "run `pipeline run` again to finish"
    )


def _stream_shards(
    shard_paths: Sequence[Path], results: _SplitSheet, failures: _Sheet
) -> Counter[str]:
    """Send each shard's rows, in order, to Results (ok, no_cards) or Failures (any other
    status, even an unexpected or missing one); count rows by status."""
    counts: Counter[str] = Counter()
    result_names = [name for name, _ in results.columns]
    failure_names = [name for name, _ in failures.columns]
    wanted = list(dict.fromkeys(result_names + failure_names))
    states = pa.array(RESULT_STATES, pa.string())
    for path in shard_paths:
        for batch in _batches(path, wanted):
            status = batch.column(wanted.index(schema.STATUS))
            _count(status, counts)
            is_result = pc.is_in(status, value_set=states)
            results.add(_pylists(batch.filter(is_result), result_names))
            failures.add(_pylists(batch.filter(pc.invert(is_result)), failure_names))
    return counts


def _count(status: pa.Array, into: Counter[str]) -> None:
    for item in pc.value_counts(status).to_pylist():
        into[item["values"] if item["values"] is not None else "unknown"] += item["counts"]


def _batches(path: Path, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """The shard's record batches with `columns`, in row order; a shard that cannot be read is
    a `RunStateError` that says what to do."""
    try:
        shard = pq.ParquetFile(path)
        missing = [c for c in columns if c not in shard.schema_arrow.names]
        if missing:
            raise RunStateError(
                f"result shard {path} has no column {', '.join(map(repr, missing))}; "
                "it is not from this run: delete it and run `pipeline run` again to redo it"
            )
        yield from shard.iter_batches(batch_size=BATCH_ROWS, columns=list(columns))
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(path, exc) from exc


def _unreadable(path: Path, exc: Exception) -> RunStateError:
    return RunStateError(
        f"cannot read result shard {path} ({exc}); "
        "delete it and run `pipeline run` again to redo that shard"
    )


def _pylists(batch: pa.RecordBatch, names: Sequence[str]) -> list[list[Any]]:
    """Each column as a Python list; NaN and infinities become null (Excel has neither)."""
    out = []
    for name in names:
        column = batch.column(name)
        if pa.types.is_decimal(column.type):
            column = column.cast(pa.float64())
        if pa.types.is_floating(column.type):
            bad = pc.invert(pc.is_finite(column))
            if pc.any(bad).as_py():
                column = pc.if_else(bad, pa.scalar(None, column.type), column)
        out.append(column.to_pylist())
    return out


def _result_columns(
    shard_paths: Sequence[Path], id_column: str, value_columns: Sequence[str]
) -> list[Column]:
    """Results' columns: id, status, the input values, then the first shard's derived columns
    (everything after `error`) in its order."""
    derived: list[pa.Field] = []
    if shard_paths:
        try:
            fields = list(pq.read_schema(shard_paths[0]))
        except (OSError, pa.ArrowException) as exc:
            raise _unreadable(shard_paths[0], exc) from exc
        names = [f.name for f in fields]
        derived = fields[names.index(schema.ERROR) + 1 :] if schema.ERROR in names else []
    return [
        (id_column, _TEXT),
        (schema.STATUS, _TEXT),
        *[(name, _MONEY) for name in value_columns],
        *[(f.name, _kind(f.type)) for f in derived],
    ]


def _kind(dtype: pa.DataType) -> str:
    if pa.types.is_boolean(dtype):
        return _BOOL
    if pa.types.is_integer(dtype):
        return _NUMBER
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return _MONEY
    return _TEXT if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) else _OTHER


def _register_styles(ws: Any) -> _Styles:
    """Add the money and header styles to the workbook; cells refer to them by index."""
    money = WriteOnlyCell(ws)
    money.number_format = MONEY_FORMAT
    header = WriteOnlyCell(ws)
    header.font = Font(bold=True)
    return _Styles(money=money.style_id, header=header.style_id)


def _clean(text: str, changes: _Changes) -> str:
    """`text` ready for an XML text node: illegal characters removed, cut to Excel's limit,
    escaped (CR as a character reference, or a parser would turn it into LF)."""
    if _ILLEGAL.search(text) is not None:
        text = _ILLEGAL.sub("", text)
        changes.sanitized += 1
    if len(text) > MAX_CELL_CHARS // 2:  # shorter ones fit even if all are surrogate pairs
        units = text.encode("utf-16-le")
        if len(units) > 2 * MAX_CELL_CHARS:
            head = units[: 2 * (MAX_CELL_CHARS - len(TRUNCATED_SUFFIX))]
            text = head.decode("utf-16-le", "ignore") + TRUNCATED_SUFFIX  # drops a split pair
            changes.truncated += 1
    return (
        text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")
    )


def _encoder(kind: str, letter: str, styles: _Styles) -> Encoder:
    """A function that turns one column's values for `rows` into `<c>` elements ('' for null);
    built once per column so the per-cell work is one f-string."""
    at, changes = f'<c r="{letter}', styles.changes
    tail = f'" s="{styles.money}"><v>' if kind == _MONEY else '"><v>'

    def numbers(values: Sequence[Any], rows: range) -> list[str]:
        return [
            f"{at}{r}{tail}{v!r}</v></c>" if v is not None else ""
            for r, v in zip(rows, values, strict=True)
        ]

    def booleans(values: Sequence[Any], rows: range) -> list[str]:
        return [
            f'{at}{r}" t="b"><v>{v:d}</v></c>' if v is not None else ""
            for r, v in zip(rows, values, strict=True)
        ]

    def texts(values: Sequence[Any], rows: range) -> list[str]:
        if kind == _OTHER:
            values = [None if v is None else str(v) for v in values]
        start = '" t="inlineStr"><is><t xml:space="preserve">'
        return [
            f"{at}{r}{start}{_clean(v, changes)}</t></is></c>" if v else ""
            for r, v in zip(rows, values, strict=True)
        ]

    def anything(values: Sequence[Any], rows: range) -> list[str]:
        # Summary values: a few, of any type, so each finds its own kind.
        return [
            _encoder(_kind_of(v), letter, styles)([v], range(r, r + 1))[0]
            for r, v in zip(rows, values, strict=True)
        ]

    encoders = {_NUMBER: numbers, _MONEY: numbers, _BOOL: booleans, _ANY: anything}
    return encoders.get(kind, texts)


def _kind_of(value: object) -> str:
    """The kind of one Summary value: a bool, int or finite float as such, others as text."""
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return _NUMBER
    return _TEXT if isinstance(value, str) else _OTHER


def _width(value: object) -> int:
    """Characters `value` takes on screen, roughly."""
    if value is None:
        return 0
    if isinstance(value, float):
        return len(f"{value:,.2f}") if math.isfinite(value) else 0
    return len(str(value))


class _RowStream:
    """Streams ready-made `<row>` XML into a write-only worksheet's `<sheetData>`.

    It does what openpyxl 3.1's `WriteOnlyWorksheet._write_rows` does, with rows already in XML:
    `_get_writer()` writes everything before the rows (sheet view with the frozen pane, column
    widths), `writer.xf.send(True)` lends the XML stream, `ws._rows` is what `ws.close()` (at
    save) closes to end `<sheetData>` and write the tail (auto-filter). Every test reads the
    sheets back, so a change in openpyxl shows there.
    """

    def __init__(self, ws: Any) -> None:
        ws._get_writer()
        self._rows: Generator[None, str, None] = self._sheet_data(ws._writer)
        next(self._rows)
        ws._rows = self._rows

    @staticmethod
    def _sheet_data(writer: Any) -> Generator[None, str, None]:
        xf = writer.xf.send(True)
        with xf.element("sheetData"):
            try:
                while True:
                    xml = yield
                    for row in fromstring(f"<d>{xml}</d>"):
                        xf.write(row)
            except GeneratorExit:
                pass
        writer.xf.send(None)

    def write(self, xml: str) -> None:
        self._rows.send(xml)


class _Sheet:
    """One sheet fed batches of columns: bold frozen header, auto-filter over it, widths from
    the header and the first `WIDTH_SAMPLE_ROWS` rows (rows wait until those are in)."""

    def __init__(
        self, ws: Any, columns: Sequence[Column], styles: _Styles, *, auto_filter: bool = True
    ) -> None:
        self.columns = list(columns)
        self.rows = 0
        self._ws, self._styles, self._auto_filter = ws, styles, auto_filter
        self._letters = [get_column_letter(i) for i in range(1, len(self.columns) + 1)]
        self._encoders = [
            _encoder(kind, letter, styles)
            for (_, kind), letter in zip(self.columns, self._letters, strict=True)
        ]
        self._pending: list[list[list[Any]]] = []
        self._stream: _RowStream | None = None
        self._next_row = 2  # row 1 is the header

    def add(self, columns: list[list[Any]]) -> None:
        """Append rows given as one list per column, all of the same length."""
        if not columns or not columns[0]:
            return
        self.rows += len(columns[0])
        self._pending.append(columns)
        if self._stream is None and self.rows < WIDTH_SAMPLE_ROWS:
            return
        if self._stream is None:
            self._start()
        self._flush()

    def close(self) -> None:
        if self._stream is None:
            self._start()
            self._flush()
        if self._auto_filter:
            self._ws.auto_filter.ref = f"A1:{self._letters[-1]}{self.rows + 1}"

    def _start(self) -> None:
        for i, letter in enumerate(self._letters):
            sample = islice(
                chain.from_iterable(cols[i] for cols in self._pending), WIDTH_SAMPLE_ROWS
            )
            widest = max([len(self.columns[i][0]), *map(_width, sample)])
            self._ws.column_dimensions[letter].width = min(max(widest + 2, MIN_WIDTH), MAX_WIDTH)
        self._ws.freeze_panes = "A2"
        self._stream = _RowStream(self._ws)
        cells = [
            f'<c r="{letter}1" s="{self._styles.header}" t="inlineStr"><is><t xml:space="preserve">'
            f"{_clean(name, self._styles.changes)}</t></is></c>"
            for letter, (name, _) in zip(self._letters, self.columns, strict=True)
        ]
        self._stream.write(f'<row r="1">{"".join(cells)}</row>')

    def _flush(self) -> None:
        assert self._stream is not None
        for columns in self._pending:
            rows = range(self._next_row, self._next_row + len(columns[0]))
            cells = [
                encode(values, rows) for encode, values in zip(self._encoders, columns, strict=True)
            ]
            xml = [
                f'<row r="{r}">{"".join(row)}</row>'
                for r, row in zip(rows, zip(*cells, strict=True), strict=True)
            ]
            self._stream.write("".join(xml))
            self._next_row = rows.stop
        self._pending = []


class _SplitSheet:
    """`Results`, then `Results 2`, `Results 3`, ... (each with the header) every `max_rows`
    data rows; a sheet starts only when it has a row to hold."""

    def __init__(
        self, wb: Any, title: str, columns: Sequence[Column], styles: _Styles, max_rows: int
    ) -> None:
        self.columns = list(columns)
        self._wb, self._styles = wb, styles
        self._index = len(wb.sheetnames)  # where the first goes; later ones right after it
        self._title, self._max = title, max_rows
        self._sheets: list[_Sheet] = []
        self._start_sheet()

    def _start_sheet(self) -> _Sheet:
        n = len(self._sheets)
        title = self._title if n == 0 else f"{self._title} {n + 1}"
        ws = self._wb.create_sheet(title, self._index + n)
        self._sheets.append(_Sheet(ws, self.columns, self._styles))
        return self._sheets[-1]

    @property
    def count(self) -> int:
        return len(self._sheets)

    @property
    def rows(self) -> int:
        return sum(sheet.rows for sheet in self._sheets)

    def add(self, columns: list[list[Any]]) -> None:
        n, start = len(columns[0]) if columns else 0, 0
        while start < n:
            sheet = self._sheets[-1]
            if sheet.rows >= self._max:
                sheet.close()
                sheet = self._start_sheet()
            take = min(n - start, self._max - sheet.rows)
            whole = start == 0 and take == n
            sheet.add(columns if whole else [c[start : start + take] for c in columns])
            start += take

    def close(self) -> None:
        self._sheets[-1].close()


def _summary_lines(
    counts: Counter[str],
    facts: Sequence[tuple[str, object]],
    results_sheets: int,
    changes: _Changes,
    expected_rows: int | None,
) -> list[tuple[str, object]]:
    """Summary's (key, value) lines; an unfinished run says so on the first line."""
    total = sum(counts.values())
    lines: list[tuple[str, object]] = []
    if expected_rows is not None and total < expected_rows:
        lines.append(("Unfinished run", _unfinished(total, expected_rows)))
    lines += [(f"rows {s}", counts[s]) for s in schema.STATES]
    lines += [(f"rows {s}", n) for s, n in counts.items() if s not in schema.STATES]
    lines.append(("rows total", total))
    lines += [(str(key), value) for key, value in facts]
    lines.append(("Results sheets", results_sheets))
    lines.append(("cells with characters Excel cannot hold (removed)", changes.sanitized))
    lines.append((f"cells cut to {MAX_CELL_CHARS:,} characters", changes.truncated))
    return lines


def _write_summary(ws: Any, lines: Sequence[tuple[str, object]], styles: _Styles) -> None:
    sheet = _Sheet(ws, [("key", _TEXT), ("value", _ANY)], styles, auto_filter=False)
    sheet.add([[key for key, _ in lines], [value for _, value in lines]])
    sheet.close()


def _discard(wb: Any) -> None:
    """Close and delete the temporary files of an unsaved write-only workbook, which openpyxl
    would otherwise keep until the process exits."""
    for ws in wb.worksheets:
        writer = getattr(ws, "_writer", None)
        if writer is None:
            continue
        steps = [writer.close, writer.cleanup]
        if ws._rows is not None:
            steps.insert(0, ws._rows.close)
        for step in steps:
            try:
                step()
            except Exception as exc:  # best effort: the error in flight is the one to report
                log.debug("cleaning up sheet %r: %s: %s", ws.title, step.__name__, exc)
