"""Read the user's input file (.csv, .parquet, .xlsx) in bounded memory, one batch at a time.

Owns the input readers: `read_batches` yields tables of the wanted columns in input order,
every value as the file holds it (CSV and xlsx cells as text), plus `LINE`, each row's number
as a person's editor shows it (the header is row 1), for `shard.py` and `plan/figures.py` to
check; `input_columns` and `count_rows` answer without reading the whole file. Errors about a
file that cannot be read, lacks a wanted column or holds one twice are one-line InputErrors
naming the file (and the sheet). Workbooks are read by `xlsx.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from pipeline.errors import InputError
from pipeline.inputs import xlsx

LINE = "\0line"
"""The row number column of every batch; the NUL keeps it apart from any input column."""
KINDS = (".csv", ".parquet", ".xlsx")
_CSV_BLOCK_BYTES = 1 << 20  # ~30k rows of 7 columns per batch
_HEADER_BLOCK_BYTES = 1 << 20  # enough for any header row
_PARQUET_BATCH_ROWS = 65_536
_XLSX_BATCH_ROWS = 20_000


def count_rows(source: Path, sheet: str | None = None) -> int:
    """Data rows in `source`: Parquet from its metadata, CSV and xlsx by streaming records
    (rows blank in the first column are not counted)."""
    kind = _kind(source)
    if kind == ".parquet":
        with _arrow_errors(source, "Parquet"), pq.ParquetFile(source) as file:
            return int(file.metadata.num_rows)
    header = input_columns(source, sheet)
    with contextlib.closing(read_batches(source, header[:1], sheet)) as batches:
        return sum(batch.num_rows for batch in batches)


def input_columns(source: Path, sheet: str | None = None) -> list[str]:
    """The input's column names, stripped of surrounding spaces, in file order."""
    kind = _kind(source)
    if kind == ".csv":
        return [name.strip() for name in _csv_header(source)]
    if kind == ".parquet":
        with _arrow_errors(source, "Parquet"), pq.ParquetFile(source) as file:
            return [name.strip() for name in file.schema_arrow.names]
    with xlsx.read_sheet(source, sheet) as (title, rows):
        return _xlsx_header(source, title, rows)


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

    `sheet` is the xlsx sheet (None: the first visible one; ignored for other kinds). Rows
    whose every wanted cell is empty are skipped (blank rows between blocks, a CSV's empty
    lines, a row of commas), in every format alike. Close the generator when stopping early:
    the file stays open until then.
    """
    kind = _kind(source)
    if kind == ".csv":
        batches = _read_csv(source, columns)
    elif kind == ".parquet":
        batches = _read_parquet(source, columns)
    else:
        batches = _read_xlsx(source, columns, sheet)
    return _without_blank_rows(batches)


def _without_blank_rows(
    batches: Generator[pa.Table, None, None],
) -> Generator[pa.Table, None, None]:
    with contextlib.closing(batches):
        for batch in batches:
            blank = _blank_rows(batch)
            yield batch if blank is None else batch.filter(pc.invert(blank))


def _blank_rows(batch: pa.Table) -> pa.ChunkedArray | None:
    """Which rows hold nothing in any wanted cell (null, NaN, only spaces); None if none."""
    blank: Any = None
    for column in batch.columns[:-1]:  # LINE is last
        kind = column.type
        if pa.types.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            empty = pc.equal(pc.utf8_trim_whitespace(column), "")
        elif pa.types.is_floating(kind):
            empty = pc.is_nan(column)  # how pandas writes an empty cell
        else:
            empty = pc.is_null(column)
        empty = pc.fill_null(empty, True)
        blank = empty if blank is None else pc.and_(blank, empty)
    if blank is None or not pc.any(blank).as_py():
        return None
    return blank


def _resolve(source: Path | str, header: Sequence[str], columns: Sequence[str]) -> list[int]:
    """Positions of `columns` in `header`, matched after stripping spaces. A wanted column
    found twice is refused: which of the two the user meant cannot be known."""
    names = [name.strip() for name in header]
    if not any(names):
        raise InputError(f"{source}: the first row is empty; it must hold the column names")
    position: dict[str, int] = {}
    for i, name in enumerate(names):
        first = position.setdefault(name, i)
        if first != i and name in columns:
            raise InputError(
                f"{source}: column {name!r} appears twice (columns {first + 1} and {i + 1}); "
                "rename or remove one"
            )
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
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        text = " ".join(str(exc).split())
        if "invalid UTF8" in text or isinstance(exc, UnicodeDecodeError):
            raise InputError(
                f"{source}: the file is not UTF-8 text; save it as 'CSV UTF-8'"
            ) from exc
        if "Empty CSV file" in text:
            raise InputError(f"{source}: the file is empty (no header row)") from exc
        raise InputError(f"{source}: cannot read as {kind}: {text[:200]}") from exc


# A quoted cell may hold a line break (Alt+Enter in Excel); the reader must not split there.
# Empty lines are kept (as rows of empty cells, which the checker skips) so that every record
# keeps its number: the row a spreadsheet shows it on.
_CSV_PARSE = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)


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
    line = 2  # the header is row 1
    with _arrow_errors(source, "CSV"):
        for batch in pacsv.open_csv(
            source, read_options=read, parse_options=_CSV_PARSE, convert_options=convert
        ):
            yield _table([batch.column(p) for p in picked], columns, _lines(line, batch.num_rows))
            line += batch.num_rows


def _lines(first: int, count: int) -> pa.Array:
    return pa.array(range(first, first + count), pa.int64())


def _table(arrays: list[Any], columns: list[str], lines: pa.Array) -> pa.Table:
    """A batch: the wanted columns, named as asked, and `LINE`."""
    return pa.Table.from_arrays([*arrays, lines], names=[*columns, LINE])


def _read_parquet(source: Path, columns: list[str]) -> Generator[pa.Table, None, None]:
    with _arrow_errors(source, "Parquet"), pq.ParquetFile(source) as file:
        schema = file.schema_arrow
        picked = [schema.names[i] for i in _resolve(source, schema.names, columns)]
        for name, column in zip(picked, columns, strict=True):
            _check_parquet_type(source, column, schema.field(name).type)
        line = 2  # as if it had a header row, like the same table saved as CSV
        for batch in file.iter_batches(batch_size=_PARQUET_BATCH_ROWS, columns=picked):
            yield _table([batch.column(p) for p in picked], columns, _lines(line, batch.num_rows))
            line += batch.num_rows


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


def _xlsx_header(source: Path, title: str, rows: Iterator[tuple[int, Any]]) -> list[str]:
    """The column names: the sheet's first row that is not blank."""
    first = next(rows, None)
    if first is None:
        raise InputError(f"{source}: sheet {title!r} is empty (no header row)")
    return [xlsx.header_text(v) for v in first[1]]


def _read_xlsx(
    source: Path, columns: list[str], sheet: str | None
) -> Generator[pa.Table, None, None]:
    with xlsx.read_sheet(source, sheet) as (title, rows):
        header = _xlsx_header(source, title, rows)
        picked = _resolve(f"{source}: sheet {title!r}", header, columns)
        for chunk in _chunks(rows, _XLSX_BATCH_ROWS):
            # Rows may be shorter than the header when their last cells are empty.
            arrays = [
                pa.array([r[i] if i < len(r) else None for _, r in chunk], pa.string())
                for i in picked
            ]
            yield _table(arrays, columns, pa.array([n for n, _ in chunk], pa.int64()))


def _chunks(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
