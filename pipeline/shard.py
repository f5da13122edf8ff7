"""Turn the user's input file into validated input shards.

Owns reading the input (.csv, .parquet, .xlsx) in bounded memory, checking every row and
writing `shard-NNNNN.parquet` files of `shard_size` rows (layout in `schema.py`) into the run's
input folder. Nothing here calls the API.

A row is `invalid` when its id is empty or repeated, or a value is negative or not a number;
`_invalid` says why, every reason joined by "; " (id first, then the columns in order). A value
is cleaned before parsing: a currency sign (₹, Rs, Rs., INR, $; any case) before or after the
number, thousands commas and any whitespace are removed; an empty cell counts as 0. Checks run per
batch with polars expressions; only the repeated-id check walks the ids in Python.
Row numbers in messages are 1-based data rows; `_row` is 0-based.
"""

from __future__ import annotations

import contextlib
import datetime
import warnings
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from openpyxl import load_workbook

from pipeline.errors import InputError
from pipeline.schema import INVALID, ROW, input_schema
from pipeline.store import RunLayout, write_parquet_atomic

KINDS = (".csv", ".parquet", ".xlsx")
_CSV_BLOCK_BYTES = 1 << 20  # ~30k rows of 7 columns per batch
_HEADER_BLOCK_BYTES = 1 << 20  # enough for any header row
_PARQUET_BATCH_ROWS = 65_536
_XLSX_BATCH_ROWS = 20_000
_MAX_TEXT = 40  # characters of a bad value quoted in a reason
# Cleaning a value that does not parse as it is: whitespace (\s covers NBSP and thin spaces,
# plus zero-width spaces and BOMs from copy-pasting) goes, then a currency sign before the
# number (after any minus) or after it, and the Indian "/-" ("Rs. 500/-"); then commas, but
# only where they group thousands (1,250.50, 1,00,000), so that "1,5" is not read as 15.
_SPACES = r"[\s\u200b\ufeff]"
_CURRENCY = r"(?:₹|rs\.?|inr|\$)"
_LEADING_CURRENCY = rf"(?i)^([-+]?){_CURRENCY}"
_TRAILING_CURRENCY = rf"(?i){_CURRENCY}?(?:/-)?$"
_GROUPED = r"^[-+]?(?:\d{1,3}(?:,\d{3})*|\d{1,2}(?:,\d{2})*,\d{3})(?:\.\d*)?$"


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
    `limit` data rows (None: all, 0: none). Shards left by an earlier, longer input are removed.
    Raises InputError for a file that cannot be read or lacks a column.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size ({shard_size}) must be at least 1")
    if limit is not None and limit < 0:
        raise ValueError(f"limit ({limit}) must be 0 or more")
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


# --- checking and writing


class _RowChecker:
    """Checks batches in input order; remembers every id seen to find repeats across the file.

    Memory: `_seen` holds a str and an int per id: ~120 MB per million ids like "CG0000001"
    (measured with tracemalloc: 121 MB), so 2,000,000 users cost ~240 MB on top of a batch.
    """

    def __init__(self, id_column: str, value_columns: list[str]) -> None:
        self.id_column = id_column
        self.value_columns = value_columns
        self.schema = input_schema(id_column, value_columns)
        self.rows = 0
        self.invalid = 0
        self._seen: dict[str, int] = {}

    def check(self, batch: pa.Table) -> pa.Table:
        """The batch as input-shard rows: `_row` counts on from earlier batches."""
        frame = pl.DataFrame(pl.from_arrow(batch))
        ids = frame.select(_id_expr(self.id_column, frame.schema[self.id_column])).to_series()
        columns = [ids, pl.Series(_REPEAT, self._repeats(ids), pl.String)]
        for name in self.value_columns:
            text, number = _parse(frame[name])
            columns += [number.alias(name), text.alias(_text_column(name))]
        parsed = pl.DataFrame(columns).with_columns(
            pl.int_range(self.rows, self.rows + pl.len(), dtype=pl.Int64).alias(ROW),
            *(_fault_expr(name) for name in self.value_columns),
        )
        values = [
            pl.when(pl.col(_fault_column(name)) == _FINE).then(pl.col(name).abs()).alias(name)
            for name in self.value_columns  # abs() turns -0.0 into 0.0
        ]
        table = parsed.select(ROW, self.id_column, *values).with_columns(self._reasons(parsed))
        table = table.to_arrow().cast(self.schema)
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

    def _reasons(self, parsed: pl.DataFrame) -> pl.Series:
        """`_invalid` for a parsed batch; the texts are built only for the rows that need one."""
        problem = pl.any_horizontal(
            pl.col(self.id_column).is_null(),
            pl.col(_REPEAT).is_not_null(),
            *(pl.col(_fault_column(name)) != _FINE for name in self.value_columns),
        )
        parts = [
            pl.when(pl.col(self.id_column).is_null()).then(pl.lit(f"missing {self.id_column}")),
            pl.col(_REPEAT),
            *(_reason_expr(name) for name in self.value_columns),
        ]
        found = (
            parsed.with_row_index(_INDEX)
            .filter(problem)
            .select(_INDEX, pl.concat_str(parts, separator="; ", ignore_nulls=True))
        )
        reasons = pl.Series(INVALID, dtype=pl.String).extend_constant(None, parsed.height)
        if found.height:
            reasons = reasons.scatter(found[_INDEX], found.to_series(1))
        return reasons


# Working columns of a batch being checked; the NUL keeps them apart from any input column.
_REPEAT = "\0repeat"
_INDEX = "\0index"
_FINE, _NOT_A_NUMBER, _NEGATIVE = 0, 1, 2


def _text_column(name: str) -> str:
    return f"\0text:{name}"


def _fault_column(name: str) -> str:
    return f"\0fault:{name}"


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


def _parse(series: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(text, number) of one value column: 0.0 for an empty cell, null when it is no number."""
    if series.dtype.is_numeric():
        number = series.cast(pl.Float64).fill_nan(None)  # NaN: how pandas writes an empty cell
        return series.cast(pl.String), number.fill_null(0.0)
    text = series.cast(pl.String).str.strip_chars()
    number = text.cast(pl.Float64, strict=False)
    empty = (text.is_null() | (text == "")).fill_null(True)
    # Most cells are plain numbers; only the others go through the (slower) cleaning regexes.
    # Cleaning only removes characters that a parsable number cannot hold, so this is exact.
    retry = number.is_null() & ~empty
    if retry.any():
        rows = retry.arg_true()
        number = number.scatter(rows, _clean_number(text.gather(rows)))
    if empty.any():
        number = number.scatter(empty.arg_true(), 0.0)
    return text, number


def _clean_number(text: pl.Series) -> pl.Series:
    """Parse values the plain cast refused, after cleaning (see `_SPACES`); null if still bad."""
    cleaned = (
        text.str.replace_all(_SPACES, "")
        .str.replace(_LEADING_CURRENCY, "${1}")
        .str.replace(_TRAILING_CURRENCY, "")
    )
    t = pl.col("t")
    grouped = ~t.str.contains(",", literal=True) | t.str.contains(_GROUPED)
    number = t.str.replace_all(",", "", literal=True).cast(pl.Float64, strict=False)
    return pl.DataFrame({"t": cleaned}).select(pl.when(grouped).then(number)).to_series()


def _fault_expr(name: str) -> pl.Expr:
    number = pl.col(name)
    return (
        pl.when(number.is_null() | ~number.is_finite())
        .then(_NOT_A_NUMBER)
        .when(number < 0)
        .then(_NEGATIVE)
        .otherwise(_FINE)
        .cast(pl.Int8)
        .alias(_fault_column(name))
    )


def _reason_expr(name: str) -> pl.Expr:
    fault, shown = pl.col(_fault_column(name)), pl.col(_text_column(name)).str.slice(0, _MAX_TEXT)
    return (
        pl.when(fault == _NOT_A_NUMBER)
        .then(pl.format("{}: '{}' is not a number", pl.lit(name), shown))
        .when(fault == _NEGATIVE)
        .then(pl.format("{}: {} is negative", pl.lit(name), shown))
    )


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
        written = set(self.names)
        for name in self.layout.input_shards():  # from an earlier, longer input
            if name not in written:
                self.layout.input_shard(name).unlink()

    def _write(self, rows: int) -> None:
        table = pa.concat_tables(self._pending, promote_options="none")
        name = self.layout.shard_name(len(self.names))
        write_parquet_atomic(table.slice(0, rows), self.layout.input_shard(name))
        self.names.append(name)
        rest = table.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
