"""Turn the user's input file into validated input shards.

Owns reading the input (.csv, .parquet, .xlsx) in bounded memory, checking every row and
writing `shard-NNNNN.parquet` files of `shard_size` rows (layout in `schema.py`) into the run's
input folder. Nothing here calls the API.

A row is `invalid` when its id is empty or repeated, or a value is negative or not a number;
`_invalid` says why, every reason joined by "; " (id first, then the columns in order). A value
is cleaned before parsing: a currency sign (₹, Rs, Rs., INR, $) before or after the number,
thousands commas and any whitespace are removed; an empty cell counts as 0. Checks run per
batch with polars expressions; only the repeated-id check walks the ids in Python.
Row numbers in messages are 1-based data rows; `_row` is 0-based.
"""

from __future__ import annotations

import contextlib
import datetime
import warnings
import zipfile
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.schema import INVALID, ROW, input_schema
from pipeline.store import RunLayout, write_parquet_atomic

KINDS = (".csv", ".parquet", ".xlsx")
_CSV_BLOCK_BYTES = 4 << 20  # ~100k rows of 7 columns per batch
_HEADER_BLOCK_BYTES = 1 << 20  # enough for any header row
_PARQUET_BATCH_ROWS = 65_536
_XLSX_BATCH_ROWS = 20_000
_MAX_TEXT = 40  # characters of a bad value quoted in a reason
# Removed before parsing: thousands commas, whitespace (\s covers NBSP and thin spaces), and
# zero-width spaces and BOMs that copy-pasting from web pages brings along.
_NOISE = r"[,\s\u200b\ufeff]"
_CURRENCY = r"(?:₹|rs\.?|inr|\$)"


@dataclass(frozen=True)
class ShardingReport:
    rows: int
    """Data rows read (after `limit`)."""
    invalid: int
    """Rows marked invalid; they are in the shards but are never requested."""
    shards: list[str]
    """Shard file names in input order, as `RunLayout.shard_name` gives them."""


def shard_input(
    source: Path,
    *,
    layout: RunLayout,
    id_column: str,
    value_columns: Sequence[str],
    shard_size: int,
    sheet: str | None = None,
    limit: int | None = None,
) -> ShardingReport:
    """Read `source` and write its rows as input shards of `shard_size` rows (the last fewer).

    `value_columns` are the input columns the request reads (a repeat is read once); `sheet` is
    the xlsx sheet (None: the first; ignored for other kinds); `limit` keeps only the first
    `limit` data rows (None: all). Input shards left from an earlier, longer input are removed.
    Raises InputError for a file that cannot be read or lacks a column.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size ({shard_size}) must be at least 1")
    values = list(dict.fromkeys(value_columns))
    if id_column in values:
        raise ValueError(f"id column {id_column!r} cannot also be a value column")
    checker = _RowChecker(id_column, values)
    writer = _ShardWriter(layout, checker.schema, shard_size)
    remaining = limit
    with contextlib.closing(_read(source, [id_column, *values], sheet)) as batches:
        for batch in batches:
            if remaining is not None:
                batch = batch.slice(0, max(remaining, 0))
                remaining -= batch.num_rows
            writer.add(checker.check(batch))
            if remaining is not None and remaining <= 0:
                break
    writer.close()
    return ShardingReport(rows=checker.rows, invalid=checker.invalid, shards=writer.names)


def count_rows(source: Path, sheet: str | None = None) -> int:
    """Data rows in `source`: Parquet from its metadata, CSV and xlsx by streaming records."""
    kind = _kind(source)
    if kind == ".parquet":
        with _arrow_errors(source, "Parquet"), pq.ParquetFile(source) as file:
            return int(file.metadata.num_rows)
    header = input_columns(source, sheet)
    return sum(batch.num_rows for batch in _read(source, header[:1], sheet))


def input_columns(source: Path, sheet: str | None = None) -> list[str]:
    """The input's column names, stripped of surrounding spaces, in file order."""
    kind = _kind(source)
    if kind == ".csv":
        return [name.strip() for name in _csv_header(source)]
    if kind == ".parquet":
        with _arrow_errors(source, "Parquet"), pq.ParquetFile(source) as file:
            return [name.strip() for name in file.schema_arrow.names]
    with _workbook(source) as workbook:
        rows = _worksheet(source, workbook, sheet).iter_rows(values_only=True)
        return [_header_text(v) for v in _xlsx_header(source, rows)]


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


def _read(source: Path, columns: list[str], sheet: str | None) -> Generator[pa.Table, None, None]:
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
        raise InputError(f"{source}: column{plural} {which} not found (columns: {listed})")
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


def _csv_header(source: Path) -> list[str]:
    options = pacsv.ReadOptions(block_size=_HEADER_BLOCK_BYTES)
    with _arrow_errors(source, "CSV"):
        return list(pacsv.open_csv(source, read_options=options).schema.names)


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
        for batch in pacsv.open_csv(source, read_options=read, convert_options=convert):
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
    try:
        with warnings.catch_warnings():  # openpyxl warns about styles and extensions it drops
            warnings.simplefilter("ignore")
            from openpyxl import load_workbook

            workbook = load_workbook(source, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, SyntaxError) as exc:
        raise InputError(f"{source}: cannot read as an .xlsx workbook ({exc})") from exc
    try:
        yield workbook
    finally:
        workbook.close()


def _worksheet(source: Path, workbook: Any, sheet: str | None) -> Any:
    names: list[str] = workbook.sheetnames
    if sheet is None:
        return workbook[names[0]]
    if sheet not in names:
        listed = ", ".join(names)
        raise InputError(f"{source}: sheet {sheet!r} not found (sheets: {listed})")
    return workbook[sheet]


def _xlsx_header(source: Path, rows: Iterator[tuple[Any, ...]]) -> tuple[Any, ...]:
    header = next(rows, None)
    if header is None:
        raise InputError(f"{source}: the sheet is empty (no header row)")
    return header


def _read_xlsx(
    source: Path, columns: list[str], sheet: str | None
) -> Generator[pa.Table, None, None]:
    with _workbook(source) as workbook:
        rows = _worksheet(source, workbook, sheet).iter_rows(values_only=True)
        header = [_header_text(v) for v in _xlsx_header(source, rows)]
        picked = _resolve(source, header, columns)
        try:
            for chunk in _chunks(
                (r for r in rows if any(v is not None for v in r)), _XLSX_BATCH_ROWS
            ):
                arrays = [
                    pa.array([_cell_text(r[i]) if i < len(r) else None for r in chunk], pa.string())
                    for i in picked
                ]
                yield pa.Table.from_arrays(arrays, names=columns)
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, SyntaxError) as exc:
            raise InputError(f"{source}: cannot read as an .xlsx workbook ({exc})") from exc


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


# --- checking and writing


class _RowChecker:
    """Checks batches in input order; remembers every id seen to find repeats across the file.

    Memory: `seen` holds one str key and one int per id, ~130 bytes per id for ids like
    "CG0000001" (measured: ~125 MB per million ids), so 2,000,000 users cost ~250 MB.
    """

    def __init__(self, id_column: str, value_columns: list[str]) -> None:
        self.id_column = id_column
        self.value_columns = value_columns
        self.schema = input_schema(id_column, value_columns)
        self.rows = 0
        self.invalid = 0
        self._seen: dict[str, int] = {}

    def check(self, batch: pa.Table) -> pa.Table:
        frame = pl.DataFrame(pl.from_arrow(batch))
        ids = frame.select(_id_expr(self.id_column, frame.schema[self.id_column])).to_series()
        values, reasons = [], [_missing_id(self.id_column), pl.col(INVALID)]
        for name in self.value_columns:
            value, reason = _value_exprs(name, frame.schema[name])
            values.append(value)
            reasons.append(reason)
        reason = pl.concat_str(reasons, separator="; ", ignore_nulls=True)
        checked = frame.with_columns(ids, pl.Series(INVALID, self._repeats(ids), pl.String)).select(
            pl.int_range(self.rows, self.rows + pl.len(), dtype=pl.Int64).alias(ROW),
            pl.col(self.id_column),
            *values,
            pl.when(reason != "").then(reason).alias(INVALID),
        )
        table = checked.to_arrow().cast(self.schema)
        self.rows += table.num_rows
        self.invalid += table.num_rows - table.column(INVALID).null_count
        return table

    def _repeats(self, ids: pl.Series) -> list[str | None]:
        reasons: list[str | None] = [None] * len(ids)
        seen = self._seen
        for offset, key in enumerate(ids.to_list(), start=self.rows):
            if key is not None and (first := seen.setdefault(key, offset)) != offset:
                reasons[offset - self.rows] = (
                    f"duplicate {self.id_column} (first at row {first + 1})"
                )
        return reasons


def _missing_id(id_column: str) -> pl.Expr:
    return pl.when(pl.col(id_column).is_null()).then(pl.lit(f"missing {id_column}"))


def _id_expr(name: str, dtype: pl.DataType) -> pl.Expr:
    """The id as stripped text; a whole number from Parquet (1234.0) becomes "1234"."""
    col = pl.col(name)
    if dtype.is_decimal():
        col = col.cast(pl.Float64)
    if dtype.is_float() or dtype.is_decimal():
        whole = (col == col.floor()) & (col.abs() < 2.0**63)
        col = (
            pl.when(col.is_nan())
            .then(None)
            .when(whole)
            .then(col.cast(pl.Int64).cast(pl.String))
            .otherwise(col.cast(pl.String))
        )
    text = col.cast(pl.String).str.strip_chars()
    return pl.when(text != "").then(text).alias(name)


def _value_exprs(name: str, dtype: pl.DataType) -> tuple[pl.Expr, pl.Expr]:
    """(the parsed value, the reason it is invalid or null) for one value column."""
    col = pl.col(name)
    if dtype.is_numeric():
        number = col.cast(pl.Float64)
        text = col.cast(pl.String)
        empty = col.is_null() | number.is_nan()  # NaN is how pandas writes an empty cell
    else:
        text = col.cast(pl.String).str.strip_chars()
        empty = text.is_null() | (text == "")
        cleaned = text.str.replace_all(_NOISE, "")
        cleaned = cleaned.str.replace(f"(?i)^([-+]?){_CURRENCY}", "${1}")
        cleaned = cleaned.str.replace(f"(?i){_CURRENCY}$", "")
        number = cleaned.cast(pl.Float64, strict=False)
    bad = ~empty & (number.is_null() | ~number.is_finite())
    negative = ~empty & ~bad & (number < 0)
    value = pl.when(empty).then(0.0).when(bad | negative).then(None).otherwise(number.abs())
    shown = text.str.slice(0, _MAX_TEXT)
    reason = (
        pl.when(bad)
        .then(pl.format("{}: '{}' is not a number", pl.lit(name), shown))
        .when(negative)
        .then(pl.format("{}: {} is negative", pl.lit(name), shown))
    )
    return value.alias(name), reason


class _ShardWriter:
    """Cuts checked batches into shards of exactly `shard_size` rows and writes each atomically."""

    def __init__(self, layout: RunLayout, schema: pa.Schema, shard_size: int) -> None:
        self.layout = layout
        self.schema = schema
        self.shard_size = shard_size
        self.names: list[str] = []
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._pending_rows += table.num_rows
        while self._pending_rows >= self.shard_size:
            self._write(self.shard_size)

    def close(self) -> None:
        if self._pending_rows:
            self._write(self._pending_rows)
        for name in self.layout.input_shards():  # from an earlier, longer input
            if name not in self.names:
                self.layout.input_shard(name).unlink()

    def _write(self, rows: int) -> None:
        table = pa.concat_tables(self._pending, promote_options="none")
        name = self.layout.shard_name(len(self.names))
        write_parquet_atomic(table.slice(0, rows), self.layout.input_shard(name))
        self.names.append(name)
        rest = table.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
