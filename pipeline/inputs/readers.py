"""Read the user's input file (.csv, .parquet, .xlsx) in bounded memory, one batch at a time.

Owns the input readers: `read_batches` yields tables of the wanted columns in input order,
every value as the file holds it (CSV and xlsx cells as text), for `shard.py` and
`plan/figures.py` to check; `input_columns` and `count_rows` answer without reading the whole
file. Errors about a file that cannot be read or lacks a column are one-line InputErrors naming
the file.
"""

from __future__ import annotations

import contextlib
import datetime
import warnings
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.errors import InputError

KINDS = (".csv", ".parquet", ".xlsx")
_CSV_BLOCK_BYTES = 1 << 20  # ~30k rows of 7 columns per batch
_HEADER_BLOCK_BYTES = 1 << 20  # enough for any header row
_PARQUET_BATCH_ROWS = 65_536
_XLSX_BATCH_ROWS = 20_000


def count_rows(source: Path, sheet: str | None = None) -> int:
    """Data rows in `source`: Parquet from its metadata, CSV and xlsx by streaming records."""
    kind = _kind(source)
    if kind == ".parquet":
        with _arrow_errors(source, "Parquet"), pq.ParquetFile(source) as file:
            return int(file.metadata.num_rows)
    header = input_columns(source, sheet)
    return sum(batch.num_rows for batch in read_batches(source, header[:1], sheet))


def input_columns(source: Path, sheet: str | None = None) -> list[str]:
    """The input's column names, stripped of surrounding spaces, in file order."""
    kind = _kind(source)
    if kind == ".csv":
        return [name.strip() for name in _csv_header(source)]
    if kind == ".parquet":
        with _arrow_errors(source, "Parquet"), pq.ParquetFile(source) as file:
            return [name.strip() for name in file.schema_arrow.names]
    with _workbook(source) as workbook:
        return _xlsx_header(source, _xlsx_rows(source, workbook, sheet))


# --- reading: each reader yields tables of the wanted columns, renamed to their stripped names


def _kind(source: Path) -> str:
    kind = source.suffix.lower()
    if kind not in KINDS:
        raise InputError(
            f"{source}: cannot read {kind or 'a file without extension'}; "
            "the input must be .csv, .parquet or .xlsx"
        )
    if not source.is_file():
        raise InputError(
            f"{source}: file not found" if not source.exists() else f"{source}: not a file"
        )
    if source.stat().st_size == 0:
        raise InputError(f"{source}: the file is empty (no header row)")
    return kind


def read_batches(
    source: Path, columns: list[str], sheet: str | None
) -> Generator[pa.Table, None, None]:
    """Tables of `columns` (matched after stripping spaces), in input order, in batches.

    `sheet` is the xlsx sheet (None: the first; ignored for other kinds). Close the generator
    when stopping early: the file stays open until then.
    """
    kind = _kind(source)
    if kind == ".csv":
        return _read_csv(source, columns)
    if kind == ".parquet":
        return _read_parquet(source, columns)
    return _read_xlsx(source, columns, sheet)


def _resolve(source: Path, header: Sequence[str], columns: Sequence[str]) -> list[int]:
    """Positions of `columns` in `header`, matched after stripping spaces; first one wins."""
    names = [name.strip() for name in header]
    if not any(names):
        raise InputError(f"{source}: the first row is empty; it must hold the column names")
    position: dict[str, int] = {}
    for i, name in enumerate(names):
        position.setdefault(name, i)
    missing = [c for c in columns if c not in position]
    if missing:
        listed = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
        which = ", ".join(repr(c) for c in missing)
        plural = "s" if len(missing) > 1 else ""
        hint = ""
        if len(names) == 1 and any(sep in names[0] for sep in ";\t|"):
            hint = "; the file seems to use another separator than ',', save it comma-separated"
        raise InputError(f"{source}: column{plural} {which} not found (columns: {listed}){hint}")
    return [position[c] for c in columns]


@contextlib.contextmanager
def _arrow_errors(source: Path, kind: str) -> Iterator[None]:
    """Turn pyarrow's errors about a bad file into one-line InputErrors naming the file."""
    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        text = " ".join(str(exc).split())
        if "invalid UTF8" in text:
            raise InputError(
                f"{source}: the file is not UTF-8 text; save it as 'CSV UTF-8'"
            ) from exc
        if "Empty CSV file" in text:
            raise InputError(f"{source}: the file is empty (no header row)") from exc
        raise InputError(f"{source}: cannot read as {kind}: {text[:200]}") from exc


# A quoted cell may hold a line break (Alt+Enter in Excel); the reader must not split there.
_CSV_PARSE = pacsv.ParseOptions(newlines_in_values=True)


def _csv_header(source: Path) -> list[str]:
    options = pacsv.ReadOptions(block_size=_HEADER_BLOCK_BYTES)
    with _arrow_errors(source, "CSV"):
        reader = pacsv.open_csv(source, read_options=options, parse_options=_CSV_PARSE)
        return list(reader.schema.names)


def _read_csv(source: Path, columns: list[str]) -> Generator[pa.Table, None, None]:
    header = _csv_header(source)
    # Columns get positional names, so headers that repeat or differ only in spaces are fine.
    names = [f"c{i}" for i in range(len(header))]
    picked = [names[i] for i in _resolve(source, header, columns)]
    read = pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=_CSV_BLOCK_BYTES)
    # Every cell as text: ids keep leading zeros and values are cleaned the same for all kinds.
    convert = pacsv.ConvertOptions(
        include_columns=picked, column_types=dict.fromkeys(picked, pa.string())
    )
    with _arrow_errors(source, "CSV"):
        for batch in pacsv.open_csv(
            source, read_options=read, parse_options=_CSV_PARSE, convert_options=convert
        ):
            yield pa.Table.from_arrays([batch.column(p) for p in picked], names=columns)


def _read_parquet(source: Path, columns: list[str]) -> Generator[pa.Table, None, None]:
    with _arrow_errors(source, "Parquet"), pq.ParquetFile(source) as file:
        schema = file.schema_arrow
        picked = [schema.names[i] for i in _resolve(source, schema.names, columns)]
        for name, column in zip(picked, columns, strict=True):
            _check_parquet_type(source, column, schema.field(name).type)
        for batch in file.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=picked):
            yield pa.Table.from_arrays([batch.column(p) for p in picked], names=columns)


def _check_parquet_type(source: Path, column: str, kind: Any) -> None:
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    types = pa.types
    if not (
        types.is_integer(kind)
        or types.is_floating(kind)
        or types.is_decimal(kind)
        or types.is_null(kind)
        or types.is_string(kind)
        or types.is_large_string(kind)
        or types.is_string_view(kind)
    ):
        raise InputError(f"{source}: column {column!r} holds {kind}; it must hold numbers or text")


@contextlib.contextmanager
def _workbook(source: Path) -> Iterator[Any]:
    from openpyxl import load_workbook  # ~0.1 s, for XLSX input only

    try:
        with warnings.catch_warnings():  # openpyxl warns about styles and extensions it drops
            warnings.simplefilter("ignore")
            workbook = load_workbook(source, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl parses untrusted files; a damaged one raises anything
        raise _bad_xlsx(source, exc) from exc
    try:
        yield workbook
    finally:
        workbook.close()


def _bad_xlsx(source: Path, exc: Exception) -> InputError:
    return InputError(f"{source}: cannot read as an .xlsx workbook; is it damaged? ({exc})")


def _worksheet(source: Path, workbook: Any, sheet: str | None) -> Any:
    names: list[str] = workbook.sheetnames
    if sheet is not None and sheet not in names:
        listed = ", ".join(names)
        raise InputError(f"{source}: sheet {sheet!r} not found (sheets: {listed})")
    worksheet = workbook[names[0] if sheet is None else sheet]
    if not hasattr(worksheet, "reset_dimensions"):
        raise InputError(f"{source}: sheet {worksheet.title!r} is a chart, not a table")
    # Read-only mode trusts the size the writing program recorded, and some record it wrong
    # (LibreOffice: 65,536 rows; others A1:A1); without this, rows past it would be dropped.
    worksheet.reset_dimensions()
    return worksheet


def _xlsx_rows(source: Path, workbook: Any, sheet: str | None) -> Iterator[tuple[Any, ...]]:
    """The sheet's rows as tuples of values, skipping blank rows (as CSV skips empty lines)."""
    rows = _worksheet(source, workbook, sheet).iter_rows(values_only=True)
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except Exception as exc:  # a damaged sheet: see _workbook
            raise _bad_xlsx(source, exc) from exc
        if any(v is not None for v in row):
            yield row


def _xlsx_header(source: Path, rows: Iterator[tuple[Any, ...]]) -> list[str]:
    header = next(rows, None)
    if header is None:
        raise InputError(f"{source}: the sheet is empty (no header row)")
    return [_header_text(v) for v in header]


def _read_xlsx(
    source: Path, columns: list[str], sheet: str | None
) -> Generator[pa.Table, None, None]:
    with _workbook(source) as workbook:
        rows = _xlsx_rows(source, workbook, sheet)
        picked = _resolve(source, _xlsx_header(source, rows), columns)
        for chunk in _chunks(rows, _XLSX_BATCH_ROWS):
            # Rows may be shorter than the header when their last cells are empty.
            arrays = [
                pa.array([_cell_text(r[i]) if i < len(r) else None for r in chunk], pa.string())
                for i in picked
            ]
            yield pa.Table.from_arrays(arrays, names=columns)


def _chunks(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _header_text(value: Any) -> str:
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
