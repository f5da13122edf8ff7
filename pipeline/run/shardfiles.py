"""What a shard run reads from the run folder and writes to it at the end.

It reads the shard's input rows, the outcomes a previous invocation saved (its checkpoint;
for `rerun-failed`, the result shard's rows that did not fail), and marks the rows whose
request body repeats (dedupe.py), and looks their bodies up in the answer store kept across
runs (reuse.py, stored.py). While the shard runs, it appends checkpoint batches, stores
the answers to repeated bodies and looks up those that parked rows wait for. At the end it
writes the result shard atomically, in input order, and removes the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pyarrow as pa

from pipeline import schema
from pipeline.api.cardgenius import body_key
from pipeline.run.attempt import SENT
from pipeline.run.ledger import BODY, KEY
from pipeline.run.process import WorkerProcess
from pipeline.run.reuse import New
from pipeline.run.stored import Found
from pipeline.state.answers import RELEASED, bodies
from pipeline.state.store import Checkpoint, read_checkpoint, read_parquet, write_parquet_atomic

Row = dict[str, Any]


def read_shard(
    process: WorkerProcess, name: str, retry_failed: bool
) -> tuple[list[Row], dict[int, Row]]:
    """The shard's input rows, and the outcomes already known, by row number."""
    layout = process.layout
    table = read_parquet(layout.input_shard(name))
    rows: list[Row] = table.to_pylist()
    if process.repeated or process.reuse is not None:
        for row, data in zip(rows, bodies(table, process.settings.mapping), strict=True):
            key = row[BODY] = None if data is None else body_key(data)
            row[SENT] = data  # sent as they are: not made again for each request
            if key in process.repeated:  # only bodies that occur more than once are deduped
                row[KEY] = key
    known: dict[int, Row] = {}
    if retry_failed:
        for old in read_parquet(layout.result_shard(name)).to_pylist():
            if old[schema.STATUS] != schema.FAILED:
                known[old[schema.ROW]] = old
    known.update(read_checkpoint(layout.checkpoint(name), schema.ROW))
    return rows, known


def stored_answers(process: WorkerProcess, rows: list[Row]) -> dict[int, Found]:
    """The answers the store kept across runs holds for these rows' bodies, in one batch of
    lookups; for a repeated body, with this run's own answer when answers.sqlite has it."""
    reuse = process.reuse
    if reuse is None:
        return {}
    found = {
        key: Found(stored, reuse.outcome(stored))
        for key, stored in reuse.look_up(row.get(BODY) for row in rows).items()
    }
    repeated = [key for key in found if key in process.repeated]
    if repeated and process.answers is not None:
        for key, own in process.answers.get_many(repeated).items():
            found[key] = replace(found[key], own=own)
    return found


def write_result(process: WorkerProcess, name: str, ordered: list[Row]) -> None:
    """Write the shard's result (every row's outcome, in input order); drop its checkpoint."""
    layout = process.layout
    table = pa.Table.from_pylist(ordered, schema=process.result_schema)
    write_parquet_atomic(table, layout.result_shard(name))
    layout.checkpoint(name).unlink(missing_ok=True)


class Saver:
    """Writes a shard's checkpoint batches (the file is made with the first), the answers
    to repeated bodies and new answers for the store kept across runs; the shard's own
    thread only."""

    def __init__(self, process: WorkerProcess, name: str) -> None:
        self.process = process
        self.name = name
        self.checkpoint: Checkpoint | None = None

    def save(
        self, outcomes: list[Row], answers: dict[int, Row], stored: list[New] | None = None
    ) -> None:
        # The run's answers to repeated bodies before the store: a twin that finds its body's
        # answer in the store then finds it here too, when this run got it (stored.py). Both
        # before the checkpoint: a kill between them leaves answers a rerun reuses.
        if answers and self.process.answers is not None:
            self.process.answers.put_many(answers)
        if stored and self.process.reuse is not None:
            self.process.reuse.keep(stored)
        if outcomes:
            if self.checkpoint is None:
                self.checkpoint = Checkpoint(self.process.layout.checkpoint(self.name))
            self.checkpoint.append(outcomes)

    def close(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint.close()


def parked_answers(
    process: WorkerProcess, name: str, keys: list[int], outcomes: Mapping[int, Row]
) -> dict[int, Row]:
    """The answers to parked bodies `keys` that have come, and `RELEASED` for those whose
    owner is done without one (its shard finished: no answer is coming). `name`: this shard;
    `outcomes`: its outcomes so far."""
    assert process.answers is not None
    found = process.answers.get_many(keys)
    for key in keys:
        if key not in found and _owner_done(process, name, key, outcomes):
            found[key] = RELEASED
    return found


def _owner_done(process: WorkerProcess, name: str, key: int, outcomes: Mapping[int, Row]) -> bool:
    owner = process.repeated.get(key)
    if owner is None:
        return True
    row, shard = owner
    owner_shard = process.layout.shard_name(shard)
    if owner_shard == name:
        return row in outcomes
    return process.layout.result_shard(owner_shard).exists()
