"""Result shards as the merge reads them: which columns each output takes, and their batches.

Result shards (schema.py) are read one at a time, in the order given (input order), one record
batch at a time, so memory stays flat whatever the row count. The outputs take:

- `Results` (ok and no_cards rows): id, status, the input values, then the derived columns,
  which are everything after `error` in the first shard, in its order (card ids as text);
- `Failures` (every other row): id, status, http_status, attempts, error;
- the Parquet and CSV exports (every row): the Failures columns, then the input values and the
  derived columns.

Every shard's columns are cast to the first shard's types, so all rows of an output share one
schema. A shard that cannot be read, lacks a column or has one of another type is a
`RunStateError` that says what to do.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.errors import RunStateError

BATCH_ROWS = 2048  # rows per record batch read
LATER_COLUMNS = frozenset({schema.ANSWERED_AT, schema.REUSED})
"""Columns that result shards written before them lack (a run resumed across the upgrade)."""
RESULT_STATES = (schema.OK, schema.NO_CARDS)
FAILURE_FIELDS = (schema.STATUS, schema.HTTP_STATUS, schema.ATTEMPTS, schema.ERROR)


@dataclass(frozen=True)
class Columns:
    """The columns (names and types) of each output, and all of them as read from a shard."""

    results: pa.Schema
    failures: pa.Schema
    export: pa.Schema

    @property
    def read(self) -> pa.Schema:
        fields = {f.name: f for s in (self.results, self.failures) for f in s}
        return pa.schema(list(fields.values()))


def columns_of(
    shard_paths: Sequence[Path], id_column: str, value_columns: Sequence[str]
) -> Columns:
    """The outputs' columns for these shards (see the module docstring)."""
    expected = schema.result_schema(id_column, value_columns, [])
    found: dict[str, pa.Field] = {}
    derived: list[pa.Field] = []
    if shard_paths:
        try:
            first = pq.read_schema(shard_paths[0])
        except (OSError, pa.ArrowException) as exc:
            raise _unreadable(shard_paths[0], exc) from exc
        found = {f.name: f for f in first}
        names = first.names
        derived = list(first)[names.index(schema.ERROR) + 1 :] if schema.ERROR in names else []

    def fields(names: Sequence[str]) -> list[pa.Field]:
        # A column the first shard lacks keeps its usual type; reading says it is missing.
        return [_string_of(found.get(n, expected.field(n))) for n in names]

    head = fields([id_column, *FAILURE_FIELDS])
    values = fields(value_columns)
    derived = [_string_of(f) for f in derived]
    return Columns(
        results=pa.schema([head[0], head[1], *values, *map(_id_as_text, derived)]),
        failures=pa.schema(head),
        export=pa.schema([*head, *values, *derived]),
    )


def _string_of(field: pa.Field) -> pa.Field:
    # large_string holds the same text; one string type keeps the encoders to one case.
    return field.with_type(pa.string()) if pa.types.is_large_string(field.type) else field


def _id_as_text(field: pa.Field) -> pa.Field:
    # A card's id is a name, not a quantity: as text, Excel neither sums it nor rounds a long
    # one, and filters it as the text it is. The exports keep the number.
    if field.name.endswith("_id") and pa.types.is_integer(field.type):
        return field.with_type(pa.string())
    return field


def batches(path: Path, wanted: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The shard's rows, in order, as record batches of `wanted`'s columns and types."""
    try:
        shard = pq.ParquetFile(path)
        have = shard.schema_arrow
        missing = [name for name in wanted.names if name not in have.names]
        if set(missing) - LATER_COLUMNS:
            raise RunStateError(
                f"result shard {path} has no column {', '.join(map(repr, missing))}; "
                "it is not from this run: delete it and run `pipeline run` again to redo it"
            )
        present = [name for name in wanted.names if name in have.names]
        for batch in shard.iter_batches(batch_size=BATCH_ROWS, columns=present):
            if missing:  # empty cells where a shard from before the column has none
                n = batch.num_rows
                arrays = [
                    batch.column(f.name) if f.name in present else pa.nulls(n, f.type)
                    for f in wanted
                ]
                batch = pa.RecordBatch.from_arrays(arrays, names=wanted.names)
            yield _conform(batch.select(wanted.names), wanted, path)
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(path, exc) from exc


def _conform(batch: pa.RecordBatch, wanted: pa.Schema, path: Path) -> pa.RecordBatch:
    if batch.schema.equals(wanted):
        return batch
    columns = []
    for column, field in zip(batch.columns, wanted, strict=True):
        try:
            columns.append(column if column.type == field.type else pc.cast(column, field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise RunStateError(
                f"result shard {path}: column {field.name!r} is {column.type}, the first "
                f"shard's is {field.type}; delete the shard that is not from this run and run "
                "`pipeline run` again to redo it"
            ) from None
    return pa.RecordBatch.from_arrays(columns, schema=wanted)


def _unreadable(path: Path, exc: Exception) -> RunStateError:
    return RunStateError(
        f"cannot read result shard {path} ({exc}); "
        "delete it and run `pipeline run` again to redo that shard"
    )


def is_result(status: pa.Array) -> pa.Array:
    """True for rows that go to Results (ok, no_cards); false for any other status or none."""
    return pc.is_in(status, value_set=pa.array(RESULT_STATES, pa.string()))


def count_states(status: pa.Array, into: Counter[str]) -> None:
    """Add rows by status to `into`; a missing status counts as "unknown"."""
    for item in pc.value_counts(status).to_pylist():
        into[item["values"] if item["values"] is not None else "unknown"] += item["counts"]


def read_outcome_counts(shard_paths: Sequence[Path]) -> dict[str, int]:
    """Rows by status over the shards, reading only the `status` column. Every state of
    `schema.STATES` is present (0 if none); an unexpected status is counted under its own name,
    a missing one under "unknown"."""
    counts: Counter[str] = Counter({state: 0 for state in schema.STATES})
    status_only = pa.schema([(schema.STATUS, pa.string())])
    for path in shard_paths:
        for batch in batches(path, status_only):
            count_states(batch.column(0), counts)
    return dict(counts)
