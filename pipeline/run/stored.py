"""Which rows a shard settles from the answer store when it starts, and how each counts.

A row whose body has a usable answer in the store kept across runs (reuse.py) is settled from
it, not sent. How it counts depends on whose answer it is:

- `REUSED`: a request the store saved (the row would have been sent);
- `TWIN`: a twin (its body's owner is another row, and dedupe is on) gets an answer an
  earlier run fetched: reused, but dedupe would have saved the request anyway;
- `OWN`: a twin whose owner got the answer in this run (it is in the run's answers.sqlite too,
  written before the store): only deduplicated, the run's own answer copied. On a first run
  every twin settled at the start is one of these.

Offline, a row without a stored answer ends `failed` (`OFFLINE`); otherwise it is requested
(`REQUEST`). Plain data in, a decision out: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline import schema
from pipeline.state.cache import Stored

Row = dict[str, Any]
REQUEST, REUSED, TWIN, OWN, OFFLINE = "request", "reused", "twin", "own", "offline"


@dataclass(frozen=True)
class Found:
    """What is known of one body's answer when its shard starts."""

    stored: Stored
    """The answer kept across runs."""
    answer: Row | None
    """The outcome columns a row gets from it (None: it is not enough, reuse.py)."""
    own: Row | None = None
    """This run's own answer to the body (answers.sqlite), when it holds one."""


class StoreUse:
    """The decision for each row of a shard; `repeated` maps a repeated body's key to its
    owner (row, shard index) as state/answers.py found them."""

    def __init__(
        self,
        repeated: Mapping[int, tuple[int, int] | None],
        *,
        dedupe: bool = True,
        offline: bool = False,
    ) -> None:
        self.repeated = repeated
        self.dedupe = dedupe
        self.offline = offline

    def settle(self, row_id: int, key: int | None, found: Found | None) -> tuple[str, Row | None]:
        """How the row `row_id` with body `key` is settled, and the answer it copies."""
        if key is None:
            return REQUEST, None
        if found is not None and found.answer is not None:
            if not self._twin(row_id, key):
                return REUSED, found.answer
            if _answered(found.own):
                return OWN, found.own
            return TWIN, found.answer
        return (OFFLINE if self.offline else REQUEST), None

    def _twin(self, row_id: int, key: int) -> bool:
        owner = self.repeated.get(key) if self.dedupe else None
        return owner is not None and owner[0] != row_id


def _answered(own: Row | None) -> bool:
    """The run's own answer is an answer (not a failure, nor the mark that its owner gave
    up: then a twin may have sent it, or an earlier run's answer is all there is)."""
    return own is not None and own.get(schema.STATUS) in (schema.OK, schema.NO_CARDS)
