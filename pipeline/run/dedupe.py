"""The shard's dedupe book: which twin sends its body, and who waits for whom.

Rows whose request bodies are identical (twins, state/answers.py) are sent once per run. In a
shard, the first twin to come up sends (the sender); the rows that come up while its request
is in flight follow it and copy its answer. A twin whose body's owner is a row of an earlier
shard is parked until that answer is in the answer store, or until the owner's shard is done
without one (then it is released and sends itself). The book decides; the shard run moves
rows and reads the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from pipeline import schema
from pipeline.run.timers import Every
from pipeline.state.answers import RELEASED

Row = dict[str, Any]
Answer = dict[str, Any]

SEND, WAIT, COPY = "send", "wait", "copy"
"""What `claim` says of a row: send its own request, wait for a twin's answer, copy one."""

PARKED_CHECK_SECONDS = 0.25
"""How often rows parked for an earlier shard's answer look for it in the store."""


class DedupeBook:
    """One shard's twins (not thread-safe: the shard's lock guards it).

    `repeated` maps a repeated body's key to its owner (row, shard index), or None when the
    run folder does not know owners; `lookup` reads an answer from the run's answer store;
    `copied` names the outcome columns a twin copies.
    """

    def __init__(
        self,
        repeated: Mapping[int, tuple[int, int] | None],
        lookup: Callable[[int], Answer | None],
        copied: Collection[str],
        *,
        retry_failed: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.repeated = repeated
        self.lookup = lookup
        self.copied = copied
        self.retry_failed = retry_failed
        self.senders: dict[int, int] = {}
        """Body key -> the row whose request for it is in flight (or scheduled again)."""
        self.followers: dict[int, list[Row]] = {}
        self.parked: dict[int, list[Row]] = {}
        """Rows waiting for the answer to a body whose owner is in an earlier shard."""
        self.answered: dict[int, Answer] = {}
        """Answers to repeated bodies got in this shard (`new_answers`: those not yet stored)."""
        self.new_answers: dict[int, Answer] = {}
        self.parked_timer = Every(PARKED_CHECK_SECONDS, clock, at_once=True)

    def claim(self, row: Row, key: int) -> tuple[str, Answer | None]:
        """What a row with body `key` does, on its first attempt: SEND (it is the sender),
        WAIT (it follows the sender in flight here, or is parked for an owner elsewhere), or
        COPY the known answer (returned with it)."""
        row_id = row[schema.ROW]
        sender = self.senders.get(key)
        if sender == row_id:
            return SEND, None  # the sender itself, back after an outage
        if sender is not None:
            self.followers.setdefault(key, []).append(row)
            return WAIT, None
        known = self.answered.get(key) or self.lookup(key)
        if known is not None and known != RELEASED:
            if not (self.retry_failed and known[schema.STATUS] == schema.FAILED):
                return COPY, known
        elif known is None and self._owner_elsewhere(key, row_id):
            self.parked.setdefault(key, []).append(row)
            return WAIT, None
        self.senders[key] = row_id
        return SEND, None

    def _owner_elsewhere(self, key: int, row_id: int) -> bool:
        """The body's owner is another row, to be waited for (not in `rerun-failed`)."""
        owner = self.repeated.get(key)
        return owner is not None and owner[0] != row_id and not self.retry_failed

    def settle(
        self, row: Row, key: int, outcome: Row, *, final: bool
    ) -> tuple[Answer | None, list[Row]]:
        """A row's outcome, for its body: (the answer its followers copy, its followers).

        The answer is None when the row was not its body's sender, or its outcome is not
        final (transient failures ran out): then the followers send for themselves, and so
        do twins elsewhere (the store gets `RELEASED`)."""
        if self.senders.get(key) != row[schema.ROW]:
            return None, []
        del self.senders[key]
        waiting = self.followers.pop(key, [])
        answer = {k: v for k, v in outcome.items() if k in self.copied} if final else RELEASED
        self.new_answers[key] = self.answered[key] = answer
        return (answer if final else None), waiting

    def parked_due(self, now: float) -> list[int]:
        """The parked bodies to look up in the store, every `PARKED_CHECK_SECONDS`."""
        if not self.parked or not self.parked_timer.due(now):
            return []
        self.parked_timer.reset(now)
        return list(self.parked)

    def unpark(self, found: Mapping[int, Answer]) -> list[Row]:
        """Rows whose body's answer has come (or `RELEASED`), back to the queue: each copies
        the answer, or sends when released."""
        rows: list[Row] = []
        for key, answer in found.items():
            self.answered.setdefault(key, answer)
            rows.extend(self.parked.pop(key, []))
        return rows

    def take_new_answers(self) -> dict[int, Answer]:
        """Answers got since the last call, for the store."""
        answers, self.new_answers = self.new_answers, {}
        return answers
