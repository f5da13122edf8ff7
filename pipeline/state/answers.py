"""Never pay twice: the run's answers by request body, shared by every worker process.

Rows whose request bodies are identical get the same answer (the API's answer is a function of
the body), so the body is sent once per run and the answer copied to every such row
(`[processing] dedupe_requests`, on by default).

A body is known by its key: the hash of the exact bytes that are sent (`cardgenius.body_key`),
so two rows share an answer only when they would send the same bytes. After sharding, the
coordinator finds the bodies that occur more than once (`find_repeated`) and writes their keys
to `shards/repeated.parquet`, each with its owner: the first valid row with that body. Only
rows with such a body take part, and only the owner sends it. Its twins wait for the answer:
within the owner's shard, as followers of the request in flight; in later shards (in any
process), by looking the answer up in `out/answers.sqlite`, which each process appends to when
it checkpoints (WAL mode, so readers never wait for a writer). The owner is in the same shard
or an earlier one, and shards start in order, so a twin never waits for a shard that has not
started. The store holds one answer per repeated body, not one per row.

Only final answers are copied: ok, no_cards, and permanent refusals (a 4xx). When the owner
fails on transient errors, the store gets a `RELEASED` mark instead, and its twins try for
themselves; the first twin that gets an answer replaces the mark, and later twins copy it.
`rerun-failed` does not wait for owners: its rows send unless a good answer is known.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipeline import schema
from pipeline.api import cardgenius
from pipeline.errors import TOO_LARGE, TOO_LARGE_TODO, LocalError, file_size_limited
from pipeline.state.store import RunLayout, read_parquet, write_parquet_atomic

if TYPE_CHECKING:
    import polars as pl


def body_keys(
    table: pa.Table | pa.RecordBatch, mapping: Sequence[tuple[str, Sequence[str]]]
) -> list[int | None]:
    """The key of each row's request body (`cardgenius.body_key` of the bytes that are sent);
    None for invalid rows (they are never sent). About 5 microseconds a row."""
    return [None if data is None else cardgenius.body_key(data) for data in bodies(table, mapping)]


def bodies(
    table: pa.Table | pa.RecordBatch, mapping: Sequence[tuple[str, Sequence[str]]]
) -> list[bytes | None]:
    """The bytes each row's request sends (`cardgenius.body_bytes`); None for invalid rows."""
    columns = {c: table.column(c).to_pylist() for _, cols in mapping for c in cols}
    fields = [(field, [columns[c] for c in cols]) for field, cols in mapping]
    sent: list[bytes | None] = []
    for i, invalid in enumerate(table.column(schema.INVALID).to_pylist()):
        if invalid is not None:
            sent.append(None)
            continue
        body = cardgenius.build_body({f: tuple(col[i] for col in cols) for f, cols in fields})
        sent.append(cardgenius.body_bytes(body))
    return sent


def key_series(keys: Sequence[int | None]) -> pl.Series:
    """Body keys as a polars column: 16 bytes each (polars has no 128-bit integers)."""
    import polars as pl

    return pl.Series(
        "k", [None if k is None else k.to_bytes(16, "big") for k in keys], dtype=pl.Binary
    )


RELEASED = {schema.STATUS: "released"}
"""The store's mark for a body whose owner failed on transient errors: twins send it themselves."""
_RELEASED_TEXT = json.dumps(RELEASED, allow_nan=False)


def find_repeated(
    shard_paths: Sequence[Path], mapping: Sequence[tuple[str, Sequence[str]]], dest: Path
) -> tuple[int, int]:
    """Write the keys of bodies that occur more than once, with their owner rows, to `dest`;
    returns (unique bodies, repeated bodies) among the valid rows. Memory: 20 bytes a row."""
    import polars as pl

    columns = [*sorted({c for _, cols in mapping for c in cols}), schema.INVALID, schema.ROW]
    parts = []
    for path in shard_paths:
        table = read_parquet(path, columns)
        keys = key_series(body_keys(table, mapping))
        rows = pl.Series("owner", table.column(schema.ROW)).cast(pl.Int64)
        parts.append(
            pl.DataFrame([keys, rows]).with_columns(
                pl.lit(RunLayout.shard_index(path.name), pl.Int32).alias("shard")
            )
        )
    empty = pl.DataFrame(schema={"k": pl.Binary, "owner": pl.Int64, "shard": pl.Int32})
    frame = pl.concat(parts).drop_nulls("k") if parts else empty
    # The owner is the body's first row: the lowest row number, in the lowest shard.
    repeated = (
        frame.group_by("k")
        .agg(pl.col("owner").min(), pl.col("shard").min(), pl.len().alias("n"))
        .filter(pl.col("n") > 1)
        .select("k", "owner", "shard")
    )
    write_parquet_atomic(repeated.to_arrow(), dest)
    return frame["k"].n_unique(), len(repeated)


def read_repeated(path: Path) -> dict[int, tuple[int, int] | None]:
    """Repeated body keys -> (owner row, owner's shard index); None in a folder made before
    owners were kept: then the first twin to go sends."""
    try:
        table = read_parquet(path)
    except FileNotFoundError:
        return {}
    if pa.types.is_integer(table.schema.field("k").type):
        return {}  # keys of an older kind, that no body matches now: every row sends
    keys = [int.from_bytes(k, "big") for k in table.column("k").to_pylist()]
    if "owner" not in table.column_names:
        return dict.fromkeys(keys)
    owners = zip(table.column("owner").to_pylist(), table.column("shard").to_pylist(), strict=True)
    return dict(zip(keys, owners, strict=True))


@contextlib.contextmanager
def guarded(path: Path) -> Iterator[None]:
    """SQLite's errors as one line that names the store and says what to do (this store and
    the answer store kept across runs)."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        text = str(exc)
        if "full" in text:
            todo = "the disk is full; free some space"
        elif "disk I/O error" in text and file_size_limited():
            # SQLite reports a write refused for the size limit (EFBIG) as an I/O error.
            todo = f"{TOO_LARGE}; {TOO_LARGE_TODO}"
        elif "not a database" in text or "malformed" in text:
            todo = (
                "it is damaged; delete it (it only saves requests: finished rows are in the "
                "result shards and checkpoints)"
            )
        else:
            todo = f"{text}; fix that"
        raise LocalError(f"{path}: {todo}, then run the same command again") from None


class AnswerCache:
    """One process's connection to the run's answer store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        with guarded(path):
            self._db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
            self._db.execute("PRAGMA synchronous=NORMAL")

    @staticmethod
    def create(path: Path) -> None:
        """Make the store once, in the coordinator, before any worker opens it: switching a
        database to WAL needs it to itself, so workers starting together must not race to."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with guarded(path):
            db = sqlite3.connect(path, timeout=30.0)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS answers "
                    "(key TEXT PRIMARY KEY, answer TEXT NOT NULL)"
                )
                db.commit()
            finally:
                db.close()

    def get(self, key: int) -> dict[str, Any] | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The known answers among `keys`."""
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):  # SQLite's limit on variables, with room
            chunk = [cardgenius.key_text(k) for k in keys[start : start + 500]]
            marks = ",".join("?" * len(chunk))
            with self._lock, guarded(self.path):
                rows = self._db.execute(
                    f"SELECT key, answer FROM answers WHERE key IN ({marks})", chunk
                ).fetchall()
            found.update((int(key, 16), json.loads(answer)) for key, answer in rows)
        return found

    def put_many(self, answers: Mapping[int, Mapping[str, Any]]) -> None:
        """Store answers; the first answer to a body stays, but a real answer replaces a
        `RELEASED` mark (a twin got what the owner could not: later twins copy it)."""
        if not answers:
            return
        rows = [
            (cardgenius.key_text(key), json.dumps(value, allow_nan=False))
            for key, value in answers.items()
        ]
        with self._lock, guarded(self.path):
            self._db.executemany(
                "INSERT INTO answers VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                "SET answer = excluded.answer WHERE answers.answer = ?",
                [(key, answer, _RELEASED_TEXT) for key, answer in rows],
            )
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
