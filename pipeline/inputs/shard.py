"""Turn the user's input file into validated input shards.

Owns writing the checked rows as `shard-NNNNN.parquet` files of `shard_size` rows (layout in
`schema.py`) into the run's input folder: the input is read in bounded memory by `readers.py`
(.csv, .parquet, .xlsx) and every row checked by `validate.py`. Nothing here calls the API.
`KINDS`, `count_rows` and `input_columns` are `readers.py`'s, re-exported for the callers of
this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from pipeline.inputs.readers import KINDS, count_rows, input_columns, read_batches
from pipeline.inputs.validate import RowChecker
from pipeline.state.store import RunLayout, write_parquet_atomic

__all__ = [
    "KINDS",
    "ShardingReport",
    "check_input",
    "count_rows",
    "input_columns",
    "shard_input",
]


@dataclass(frozen=True)
class ShardingReport:
    rows: int
    """Data rows read (after `limit`)."""
    invalid: int
    """Rows marked invalid; they are in the shards but are never requested."""
    shards: list[str]
    """Shard file names in input order, as `RunLayout.shard_name` gives them."""


def check_input(
    source: Path, id_column: str, value_columns: Sequence[str], sheet: str | None = None
) -> None:
    """Raise InputError if `source` cannot be sharded as asked: a missing, unreadable or
    unsafe file, a missing or repeated column, a header that is not UTF-8. Reads the header
    and the first batch only, and writes nothing (a refused run leaves no state)."""
    columns = [id_column, *dict.fromkeys(value_columns)]
    with contextlib.closing(read_batches(source, columns, sheet)) as batches:
        next(batches, None)


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
    checker = RowChecker(id_column, values)
    writer = _ShardWriter(layout, checker.schema, shard_size)
    remaining = limit
    with contextlib.closing(read_batches(source, [id_column, *values], sheet)) as batches:
        for batch in batches:
            if remaining is not None:
                batch = batch.slice(0, max(remaining, 0))
                remaining -= batch.num_rows
            writer.add(checker.check(batch))
            if remaining is not None and remaining <= 0:
                break
    writer.close()
    return ShardingReport(rows=checker.rows, invalid=checker.invalid, shards=writer.names)


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
