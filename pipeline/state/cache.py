"""The answer store: answers kept across runs, so an unchanged user is not paid for twice.

One SQLite file (`answers.sqlite` in `[cache] path`, by default the user's cache folder),
shared by every run and every worker process of the user (WAL mode: readers never wait for the
writer; writers queue on a busy timeout). An answer is keyed by the endpoint that gave it
(`endpoint_identity`: the URL and auth flow, or the mock's catalogue) and by the request body's
key (`cardgenius.body_key`: the hash of the bytes sent), so a mock answer never answers a real
run, nor one endpoint's answer another's.

Only final good answers (ok, no_cards) are kept, packed: what the results need of them (the
top cards' columns, the number of cards, the HTTP status) as zlib'd JSON, with the time it was
fetched. About 200 bytes an answer with 3 cards and 3 fields (BENCHMARKS.md, "Answer store").
A run reuses an answer younger than `[cache] max_age`; a newer answer to the same body
replaces the older one.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import schema
from pipeline.errors import ConfigError
from pipeline.state.answers import guarded

STORE_FILE = "answers.sqlite"
_CHUNK = 500  # keys per query: SQLite's limit on variables, with room
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS endpoints (id INTEGER PRIMARY KEY, identity TEXT UNIQUE NOT NULL)",
    # WITHOUT ROWID: the key is the table's own order; no second b-tree for a rowid.
    "CREATE TABLE IF NOT EXISTS answers (endpoint INTEGER NOT NULL, key BLOB NOT NULL, "
    "answered_at REAL NOT NULL, answer BLOB NOT NULL, PRIMARY KEY (endpoint, key)) "
    "WITHOUT ROWID",
)


@dataclass(frozen=True)
class Stored:
    """A stored answer: when it was fetched (Unix seconds) and its packed form."""

    answered_at: float
    packed: bytes


def open_db(path: Path) -> sqlite3.Connection:
    """A connection to the store at `path`, made (in WAL mode) if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=60.0, check_same_thread=False)
    db.execute("PRAGMA synchronous=NORMAL")  # WAL: a power cut may lose the last commits only
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        # Made once: auto_vacuum must be chosen before the first table, so prune can give
        # pages back to the disk without rewriting the whole file.
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
    for statement in _SCHEMA:
        db.execute(statement)
    db.commit()
    return db


def ensure_store(path: Path) -> None:
    """Make the store if it does not exist yet (once, before the workers: switching a file to
    WAL needs it to itself); an unusable `[cache] path` is a `ConfigError` naming it."""
    try:
        open_db(path).close()
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"[cache] path: cannot use the answer store {path}: {exc}; "
            "set [cache] path to a folder you can write"
        ) from None


class AnswerStore:
    """One process's connection to the store, for one endpoint; safe across its threads."""

    def __init__(
        self, path: Path, identity: str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._lock = threading.Lock()
        self._path = path
        self._clock = clock
        with guarded(path):
            self._db = open_db(path)
            self._db.execute("INSERT OR IGNORE INTO endpoints (identity) VALUES (?)", (identity,))
            self._db.commit()
            row = self._db.execute("SELECT id FROM endpoints WHERE identity = ?", (identity,))
            self._endpoint = int(row.fetchone()[0])

    def get_many(self, keys: Sequence[int], max_age: float) -> dict[int, Stored]:
        """The answers among `keys` fetched less than `max_age` seconds ago (0: none)."""
        rows = self._select("key, answered_at, answer", keys, max_age)
        return {int.from_bytes(key, "big"): Stored(at, packed) for key, at, packed in rows}

    def fresh(self, keys: Sequence[int], max_age: float) -> set[int]:
        """The keys among `keys` with an answer a run would reuse (`plan`'s count)."""
        return {int.from_bytes(key, "big") for (key,) in self._select("key", keys, max_age)}

    def _select(self, columns: str, keys: Sequence[int], max_age: float) -> list[Any]:
        if max_age <= 0:
            return []
        since = self._clock() - max_age
        found = []
        for start in range(0, len(keys), _CHUNK):
            chunk = [k.to_bytes(16, "big") for k in keys[start : start + _CHUNK]]
            marks = ",".join("?" * len(chunk))
            with self._lock, guarded(self._path):
                found += self._db.execute(
                    f"SELECT {columns} FROM answers WHERE endpoint = ? AND answered_at >= ? "
                    f"AND key IN ({marks})",
                    [self._endpoint, since, *chunk],
                ).fetchall()
        return found

    def put_many(self, answers: Iterable[tuple[int, Stored]]) -> None:
        """Keep answers; one transaction for the lot."""
        rows = [
            (self._endpoint, k.to_bytes(16, "big"), s.answered_at, s.packed) for k, s in answers
        ]
        if not rows:
            return
        with self._lock, guarded(self._path):
            self._db.executemany("INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?)", rows)
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()


# What a result needs of an answer, packed and unpacked.


def pack(outcome: Mapping[str, Any], mapped: Sequence[str], top_n: int) -> bytes:
    """An answered row's outcome (status ok or no_cards, derived columns) as stored bytes:
    [http status, cards returned, savings gap, top_n, [card, ...]], each card [id, name,
    joining fees, yearly savings, extra benefits, net savings, [savings per mapped field in
    name order]]. Field names are not stored: the body (so the key) fixes the fields."""
    cards = []
    for net, head, savings in _packed_names(tuple(mapped), top_n):
        if outcome[net] is None:
            break  # fewer ranked cards than top_n
        cards.append([*[outcome[name] for name in head], [outcome[name] for name in savings]])
    record = [outcome[schema.HTTP_STATUS], outcome["cards_returned"]]
    record += [outcome["best_card_savings_gap"], top_n, cards]
    return zlib.compress(_COMPACT.encode(record).encode(), 6)


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""`json.dumps(..., separators=...)` makes an encoder per call; the store packs every answer."""


@functools.lru_cache(maxsize=16)
def _packed_names(
    mapped: tuple[str, ...], top_n: int
) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
    """Each top-k card's columns as `pack` reads them: its net savings, the card's columns,
    the savings per mapped field in name order. Made once, not per answer."""
    return tuple(
        (
            f"top{k}_net_savings",
            tuple(f"top{k}_{name}" for name in _CARD_COLUMNS),
            tuple(f"top{k}_{f}_savings" for f in sorted(mapped)),
        )
        for k in range(1, top_n + 1)
    )


def unpack(packed: bytes, mapped: Sequence[str], top_n: int) -> dict[str, Any] | None:
    """The outcome columns of a stored answer (status, http status, derived columns) for a run
    with `mapped` fields and `top_n`; None when it was stored with fewer cards than needed."""
    http_status, returned, gap, kept_top_n, cards = json.loads(zlib.decompress(packed))
    if kept_top_n < top_n and len(cards) == kept_top_n:
        return None  # there may be ranked cards it did not keep
    fields = sorted(mapped)
    row: dict[str, Any] = {
        schema.STATUS: schema.OK if returned else schema.NO_CARDS,
        schema.HTTP_STATUS: http_status,
        schema.ERROR: None,
        "cards_returned": returned,
        "best_card_savings_gap": gap,
    }
    for k in range(1, top_n + 1):
        card = cards[k - 1] if k <= len(cards) else None
        for i, name in enumerate(_CARD_COLUMNS):
            row[f"top{k}_{name}"] = card[i] if card else None
        savings = dict(zip(fields, card[-1], strict=True)) if card else {}
        for f in mapped:
            row[f"top{k}_{f}_savings"] = savings.get(f)
    return row


_CARD_COLUMNS = (
    "card_id",
    "card_name",
    "joining_fees",
    "total_savings_yearly",
    "total_extra_benefits",
    "net_savings",
)


# `pipeline cache stats` and `pipeline cache prune`.


def store_stats(path: Path, *, clock: Callable[[], float] = time.time) -> dict[str, Any]:
    """What the store holds: answers per endpoint, the oldest and newest, bytes on disk."""
    facts: dict[str, Any] = {"path": str(path), "answers": 0, "bytes": 0, "endpoints": []}
    if not path.exists():
        return facts
    db = open_db(path)
    try:
        rows = db.execute(
            "SELECT e.identity, COUNT(*), MIN(a.answered_at), MAX(a.answered_at) FROM answers a "
            "JOIN endpoints e ON e.id = a.endpoint GROUP BY a.endpoint ORDER BY e.identity"
        ).fetchall()
    finally:
        db.close()
    now = clock()
    for identity, count, oldest, newest in rows:
        facts["endpoints"].append(
            {
                "endpoint": identity,
                "answers": count,
                "oldest_age_s": round(now - oldest, 1),
                "newest_age_s": round(now - newest, 1),
            }
        )
        facts["answers"] += count
    facts["bytes"] = sum(
        p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists()
    )
    return facts


def prune(path: Path, older_than: float, *, clock: Callable[[], float] = time.time) -> int:
    """Drop answers fetched more than `older_than` seconds ago (0: all); give the space back.
    Returns the number dropped."""
    if not path.exists():
        return 0
    db = open_db(path)
    try:
        cursor = db.execute("DELETE FROM answers WHERE answered_at < ?", (clock() - older_than,))
        dropped = cursor.rowcount
        db.commit()
        db.execute("PRAGMA incremental_vacuum")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    return int(dropped)
