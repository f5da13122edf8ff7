"""Never pay twice: the run's answers by request body, shared by every worker process.

Rows whose request bodies are identical get the same answer (the API's answer is a function of
the body), so the body is sent once per run and the answer copied to every such row
(`[processing] dedupe_requests`, on by default). Within a shard, a row whose body is already
in flight waits for that answer; across shards and processes, answers are looked up in
`out/answers.sqlite`, which each process appends to when it checkpoints (WAL mode, so readers
never wait for a writer). A row that arrives while its twin is still in flight in another
process is sent itself: rare, and harmless.

Only final answers are kept: ok, no_cards, and permanent refusals (a 4xx). A row that failed
on transient errors is not copied; its twins try for themselves.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def body_key(body: Mapping[str, Any]) -> str:
    """A stable key for a request body: the same numbers give the same key."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class AnswerCache:
    """One process's connection to the run's answer store."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30.0, check_same_thread=False)
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)"
            )
            self._db.commit()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put_many(self, answers: Mapping[str, Mapping[str, Any]]) -> None:
        if not answers:
            return
        rows = [(key, json.dumps(value, allow_nan=False)) for key, value in answers.items()]
        with self._lock:
            self._db.executemany("INSERT OR IGNORE INTO answers VALUES (?, ?)", rows)
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
