"""Never pay twice: the run's answers by request body, shared by every worker process.

Rows whose request bodies are identical get the same answer (the API's answer is a function of
the body), so the body is sent once per run and the answer copied to every such row
(`[processing] dedupe_requests`, on by default).

After sharding, the coordinator finds the bodies that occur more than once (`find_repeated`,
vectorised: a hash of the per-field sums, as `cardgenius.build_body` makes them) and writes
their keys to `shards/repeated.parquet`. Only rows with such a body take part: within a shard,
a row whose body is already in flight waits for that answer; across shards and processes,
answers are looked up in `out/answers.sqlite`, which each process appends to when it
checkpoints (WAL mode, so readers never wait for a writer). So the store holds one answer per
repeated body, not one per row. A row that arrives while its twin is still in flight in
another process is sent itself: rare, and harmless.

Only final answers are kept: ok, no_cards, and permanent refusals (a 4xx). A row that failed
on transient errors is not copied; its twins try for themselves.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import schema
from pipeline.store import read_parquet, write_parquet_atomic


def body_keys(table: pa.Table, mapping: Sequence[tuple[str, Sequence[str]]]) -> list[int | None]:
    """A key per row of an input shard: equal for rows whose request bodies are equal; None
    for invalid rows (they are never sent)."""
    import polars as pl  # here, not at the top: a worker needs it only when bodies repeat

    columns = sorted({c for _, cols in mapping for c in cols})
    frame = pl.from_arrow(table.select([*columns, schema.INVALID]))
    assert isinstance(frame, pl.DataFrame)
    sums = [
        pl.sum_horizontal([pl.col(c).fill_null(0.0) for c in cols]).round(2).alias(field)
        for field, cols in mapping
    ]
    keys = frame.select(
        pl.when(pl.col(schema.INVALID).is_null()).then(pl.struct(sums).hash(seed=0)).alias("k")
    )
    return list(keys["k"].to_list())


def find_repeated(
    shard_paths: Sequence[Path], mapping: Sequence[tuple[str, Sequence[str]]], dest: Path
) -> tuple[int, int]:
    """Write the keys of bodies that occur more than once to `dest`; returns (unique bodies,
    repeated bodies) among the valid rows. Memory: 8 bytes per row for the keys."""
    import polars as pl

    columns = [*sorted({c for _, cols in mapping for c in cols}), schema.INVALID]
    parts = [
        pl.Series("k", body_keys(read_parquet(p, columns), mapping), dtype=pl.UInt64)
        for p in shard_paths
    ]
    keys = pl.concat(parts).drop_nulls() if parts else pl.Series("k", [], dtype=pl.UInt64)
    repeated = keys.filter(keys.is_duplicated()).unique()
    write_parquet_atomic(pa.table({"k": repeated.to_arrow()}), dest)
    return keys.n_unique(), len(repeated)


def read_repeated(path: Path) -> set[int]:
    try:
        return set(read_parquet(path).column("k").to_pylist())
    except FileNotFoundError:
        return set()


class AnswerCache:
    """One process's connection to the run's answer store."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        self._db.execute("PRAGMA synchronous=NORMAL")

    @staticmethod
    def create(path: Path) -> None:
        """Make the store once, in the coordinator, before any worker opens it: switching a
        database to WAL needs it to itself, so workers starting together must not race to."""
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30.0)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)"
            )
            db.commit()
        finally:
            db.close()

    def get(self, key: int) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT answer FROM answers WHERE key = ?", (str(key),)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def put_many(self, answers: Mapping[int, Mapping[str, Any]]) -> None:
        if not answers:
            return
        rows = [(str(key), json.dumps(value, allow_nan=False)) for key, value in answers.items()]
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?)", rows)
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
