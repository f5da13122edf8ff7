"""Every row in one file: Parquet (the hand-off for millions of rows and for tools other than
Excel) or CSV.

Both hold every row of every state, in input order, with the columns id, status, http_status,
attempts, error, then the input values and the derived columns (shards.py). Both are streamed
shard by shard, in flat memory, and written atomically (state/atomic.py): a kill or an error
leaves the old file or the new one.

Parquet keeps the values exactly as the result shards hold them (same types; zstd), gathered
into row groups of `ROW_GROUP_ROWS` rows so that readers are fast; at most one row group is in
memory.

CSV is UTF-8 with a byte-order mark (so that Excel reads ₹ and Hindi right), comma-separated,
with a header line; every string is quoted, null is empty, and so are NaN and infinities, as in
the workbook. A CSV gets opened in Excel, which reads a cell that begins with `=`, `+`, `-`,
`@`, a tab or a carriage return as a formula, one that can run a program through DDE
(`=cmd|' /C calc'!A0`). So every such string, header names included, is neutralised as OWASP
advises ("CSV Injection"): a single quote `'` goes in front, and Excel shows the text as it
came. Other tools see the quote; the Parquet export keeps every string untouched. Numbers are
numbers, never neutralised: a negative amount stays -12.5.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.merge import shards
from pipeline.state import atomic

ROW_GROUP_ROWS = 65_536
DANGEROUS_START = r"^[=+\-@\t\r]"  # what Excel may read as a formula or a DDE call
UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ExportReport:
    """What an export wrote: rows in all, rows by status, and for CSV how many string cells
    were neutralised (0 for Parquet). `seconds` is wall time."""

    path: Path
    rows: int
    counts: dict[str, int]
    cells_neutralised: int
    seconds: float


def export_parquet(
    dest: Path,
    shard_paths: Sequence[Path],
    *,
    id_column: str,
    value_columns: Sequence[str],
    clock: Callable[[], float] = time.perf_counter,
) -> ExportReport:
    """Write every row of the shards (given in input order) to the Parquet file `dest`."""
    started, counts = clock(), Counter[str]()
    columns = shards.columns_of(shard_paths, id_column, value_columns).export
    with atomic.atomic_path(dest) as tmp, pq.ParquetWriter(tmp, columns, compression="zstd") as out:
        waiting: list[pa.RecordBatch] = []
        for batch in _rows(shard_paths, columns, counts):
            waiting.append(batch)
            if sum(b.num_rows for b in waiting) >= ROW_GROUP_ROWS:
                out.write_table(pa.Table.from_batches(waiting), row_group_size=ROW_GROUP_ROWS)
                waiting = []
        if waiting:
            out.write_table(pa.Table.from_batches(waiting), row_group_size=ROW_GROUP_ROWS)
    return ExportReport(dest, sum(counts.values()), _by_state(counts), 0, clock() - started)


def export_csv(
    dest: Path,
    shard_paths: Sequence[Path],
    *,
    id_column: str,
    value_columns: Sequence[str],
    clock: Callable[[], float] = time.perf_counter,
) -> ExportReport:
    """Write every row of the shards (given in input order) to the CSV file `dest`, with
    strings neutralised against formula injection (see the module docstring)."""
    started, counts, neutralised = clock(), Counter[str](), 0
    columns = shards.columns_of(shard_paths, id_column, value_columns).export
    names, renamed = neutralise(pa.array(columns.names, pa.string()))
    header = pa.schema([f.with_name(n) for f, n in zip(columns, names.to_pylist(), strict=True)])
    with atomic.atomic_file(dest, "wb") as handle:
        handle.write(UTF8_BOM)
        with pa_csv.CSVWriter(handle, header) as out:
            for batch in _rows(shard_paths, columns, counts):
                safe, n = _csv_safe(batch)
                out.write_batch(pa.RecordBatch.from_arrays(safe, schema=header))
                neutralised += n
    total = neutralised + renamed
    return ExportReport(dest, sum(counts.values()), _by_state(counts), total, clock() - started)


def neutralise(values: pa.Array) -> tuple[pa.Array, int]:
    """Strings with a `'` put in front of each that begins with a dangerous character (see the
    module docstring), and how many were changed."""
    dangerous = pc.match_substring_regex(values, DANGEROUS_START)
    count = pc.sum(dangerous).as_py() or 0
    if not count:
        return values, 0
    return pc.if_else(dangerous, pc.binary_join_element_wise("'", values, ""), values), count


def _csv_safe(batch: pa.RecordBatch) -> tuple[list[pa.Array], int]:
    """The batch's columns for CSV: strings neutralised, NaN and infinities null."""
    out, changed = [], 0
    for column in batch.columns:
        if pa.types.is_string(column.type):
            column, n = neutralise(column)
            changed += n
        elif pa.types.is_floating(column.type):
            column = pc.if_else(pc.is_finite(column), column, pa.scalar(None, column.type))
        out.append(column)
    return out, changed


def _rows(
    shard_paths: Sequence[Path], columns: pa.Schema, counts: Counter[str]
) -> Iterator[pa.RecordBatch]:
    status_at = columns.get_field_index(schema.STATUS)
    for path in shard_paths:
        for batch in shards.batches(path, columns):
            shards.count_states(batch.column(status_at), counts)
            yield batch


def _by_state(counts: Counter[str]) -> dict[str, int]:
    return {state: counts[state] for state in schema.STATES} | dict(counts)
