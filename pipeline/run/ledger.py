"""What one shard has settled: its rows' outcomes and everything that follows from each.

An outcome is recorded once (`finish`): it goes into the checkpoint batch (batching.py) and
the event accounting (tally.py). An answered row's answer is kept for the store kept across
runs (reuse.py); a sender's outcome goes to the twins that wait on its body (dedupe.py), and
a twin settled from the answer store counts as stored.py decides. The ledger says which rows
are to be sent again; the shard run moves them, and writes what `take_unsaved` hands it.

Not thread-safe: the shard's lock guards it. No I/O of its own (the dedupe book's lookup
reads the run's answers.sqlite); its clock is the batch's and the book's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pipeline import schema
from pipeline.errors import CallError, ErrorKind, PermanentError
from pipeline.run.attempt import Attempt
from pipeline.run.batching import CheckpointBatch
from pipeline.run.dedupe import COPY, WAIT, DedupeBook
from pipeline.run.outcomes import copied_outcome, new_outcome
from pipeline.run.reuse import OFFLINE_ERROR, New
from pipeline.run.stored import OFFLINE, OWN, REQUEST, REUSED, Found, StoreUse
from pipeline.run.tally import ShardTally

if TYPE_CHECKING:  # types only: `for_shard` reads the worker's parts, the rest is plain
    from pipeline.run.process import WorkerProcess
    from pipeline.run.tasks import ShardTask

Row = dict[str, Any]
KEY = "_key"
"""The field of a row whose body repeats: its body's key (state/answers.py)."""
BODY = "_body"
"""The field of every valid row's body key, when the answer store is used (reuse.py)."""


class ShardLedger:
    def __init__(
        self,
        columns: Sequence[str],
        tally: ShardTally,
        twins: DedupeBook | None = None,
        store: StoreUse | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`columns`: the input row's columns an outcome keeps; `twins`: the dedupe book
        (None: dedupe is off); `store`: the answer store's use (None: it is not used)."""
        self.columns = tuple(columns)
        self.tally = tally
        self.twins = twins
        self.store = store
        self.outcomes: dict[int, Row] = {}
        self.batch = CheckpointBatch(clock=clock)
        self.new_stored: list[New] = []
        """New good answers for the answer store kept across runs (reuse.py)."""

    @classmethod
    def for_shard(
        cls, process: WorkerProcess, task: ShardTask, tally: ShardTally, clock: Callable[[], float]
    ) -> ShardLedger:
        """A shard's ledger, with the parts its run uses: the twins' book (dedupe on, and
        bodies that repeat) and the answer store's decisions (the store in use)."""
        settings, twins, store = process.settings, None, None
        if process.answers is not None:
            lookup, again = process.answers.get, task.retry_failed
            twins = DedupeBook(
                process.repeated, lookup, process.copied, retry_failed=again, clock=clock
            )
        if process.reuse is not None:
            offline = process.reuse.offline
            store = StoreUse(process.repeated, dedupe=settings.dedupe, offline=offline)
        columns = (schema.ROW, settings.id_column, *settings.value_columns)  # an outcome keeps
        return cls(columns, tally, twins, store, clock=clock)

    def finish(self, outcome: Row) -> None:
        self.outcomes[outcome[schema.ROW]] = outcome
        self.batch.add(outcome)
        self.tally.finished(outcome[schema.STATUS])

    def copy(self, row: Row, answer: Row, *, deduped: bool = True) -> None:
        """Settle `row` with another's answer (a twin's, or the answer store's)."""
        if deduped:
            self.tally.copied()
        self.finish(copied_outcome(row, self.columns, answer))

    def from_store(self, row: Row, stored: Mapping[int, Found]) -> bool:
        """Settle a row from the answer store, as stored.py decides (offline without an
        answer: failed); False: the row is to be requested. `stored`: by body key."""
        if self.store is None:
            return False
        key = row.get(BODY)
        found = stored.get(key) if key is not None else None
        how, answer = self.store.settle(row[schema.ROW], key, found)
        if how == REQUEST:
            return False
        if how == OFFLINE:
            failed = new_outcome(row, self.columns, schema.FAILED, error=OFFLINE_ERROR)
            failed[schema.ERROR_KIND] = ErrorKind.OTHER.value
            self.finish(failed)
            return True
        assert answer is not None and found is not None
        if how != OWN:  # the run's own answer, copied: deduplicated only
            self.tally.reused(found.stored.answered_at, saved=how == REUSED)
        self.copy(row, answer, deduped=how != REUSED)
        return True

    def answered(self, a: Attempt) -> None:
        """A row's answer; its twins waiting here copy it."""
        assert a.outcome is not None
        self.tally.answered(a.outcome[schema.LATENCY_MS])
        self.finish(a.outcome)
        if self.store is not None and a.row.get(BODY) is not None:
            self.new_stored.append((a.row[BODY], a.answered_at, a.outcome))
        self.follow(a.row, a.outcome, final=True)

    def failed(self, a: Attempt, error: CallError) -> list[Row]:
        """A row failed for good; the rows to send again (its twins, when the failure says
        nothing of their body: transient errors ran out)."""
        outcome = new_outcome(a.row, self.columns, schema.FAILED, error.http_status, a.attempts)
        outcome[schema.ERROR_KIND] = error.kind.value
        outcome[schema.ERROR] = error.message
        self.finish(outcome)
        return self.follow(a.row, outcome, final=isinstance(error, PermanentError))

    def by_copy(self, row: Row) -> bool:
        """True when the row needs no request of its own: its body's answer is known (copied
        now), in flight in this shard (the row follows it), or owned by a row of an earlier
        shard (the row is parked until its answer is stored)."""
        key = row.get(KEY)
        if key is None or self.twins is None:
            return False
        claim, known = self.twins.claim(row, key)
        if claim == COPY:
            assert known is not None
            self.copy(row, known)
            return True
        return claim == WAIT

    def follow(self, row: Row, outcome: Row, *, final: bool) -> list[Row]:
        """A sender's outcome: copy it to the rows waiting on the same body, or, when it is
        not final, return them: they try for themselves."""
        key = row.get(KEY)
        if key is None or self.twins is None:
            return []
        answer, waiting = self.twins.settle(row, key, outcome, final=final)
        if answer is None:
            return waiting
        for follower in waiting:
            self.copy(follower, answer)
        return []

    def take_unsaved(self) -> tuple[list[Row], dict[int, Row], list[New]]:
        """What to write: the checkpoint batch, answers to repeated bodies, new answers for
        the store; each starts empty again."""
        answers = self.twins.take_new_answers() if self.twins is not None else {}
        stored, self.new_stored = self.new_stored, []
        return self.batch.take(), answers, stored
