"""Answers from the store kept across runs (state/cache.py), as one worker process uses them.

When a shard starts, the keys of its rows' bodies are looked up in one batch of queries; a row
whose body has an answer younger than `[cache] max_age` from the same endpoint gets its outcome
from it (`reused`, with the time the answer was fetched) and is never sent. With `--offline`,
the rows without one end `failed` at once; with `--refresh`, nothing is looked up. Every new
good answer (ok, no_cards) is packed and kept, in one transaction per checkpoint batch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import schema
from pipeline.run.outcomes import stamp
from pipeline.state.cache import AnswerStore, Stored, pack, unpack

REUSE, REFRESH, OFFLINE = "reuse", "refresh", "offline"
New = tuple[int, float, Mapping[str, Any]]
"""A new answer to keep: (body key, fetched at in Unix seconds, the row's outcome)."""
OFFLINE_ERROR = "offline: no stored answer younger than [cache] max_age; rerun online to fill it"


@dataclass(frozen=True)
class CacheSettings:
    """The answer store as the workers use it; plain data, so it crosses process boundaries."""

    path: Path
    """The store's file."""
    endpoint: str
    """The endpoint's identity (endpoint.identity_text): part of every answer's key."""
    max_age: float
    """Seconds; 0 = reuse nothing."""
    mode: str = REUSE
    """REUSE, REFRESH (look nothing up; keep every answer) or OFFLINE (send nothing)."""


class Reuse:
    """One worker process's use of the store: look rows up, keep new answers."""

    def __init__(
        self,
        settings: CacheSettings,
        mapped: Sequence[str],
        top_n: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.offline = settings.mode == OFFLINE
        self._mapped, self._top_n, self._clock = list(mapped), top_n, clock
        self._store = AnswerStore(settings.path, settings.endpoint, clock=clock)

    def look_up(self, keys: Iterable[int | None]) -> dict[int, Stored]:
        """The usable stored answers to these bodies (none with --refresh)."""
        if self.settings.mode == REFRESH:
            return {}
        wanted = list({k for k in keys if k is not None})
        return self._store.get_many(wanted, self.settings.max_age)

    def outcome(self, stored: Stored) -> dict[str, Any] | None:
        """The outcome columns a row gets from a stored answer (None: it is not enough)."""
        row = unpack(stored.packed, self._mapped, self._top_n)
        if row is not None:
            row[schema.ANSWERED_AT] = stamp(stored.answered_at)
            row[schema.REUSED] = True
        return row

    def now(self) -> float:
        return self._clock()

    def keep(self, answers: Sequence[New]) -> None:
        """Keep new answers: (body key, fetched at, the row's outcome), ok or no_cards."""
        packed = [(key, Stored(at, pack(o, self._mapped, self._top_n))) for key, at, o in answers]
        self._store.put_many(packed)

    def close(self) -> None:
        self._store.close()
