"""One shard in one worker process: dispatch, retry schedule, checkpoints, result shard.

The shard runs on up to `share` lanes: a lane is a loop on one of the process's request
threads that takes a row, asks the shared limiter, makes the call, builds the row's outcome,
then records it and takes the next row in one hold of the shard's lock (`cond`), which guards
the rows, the retry schedule and the outcomes. The call, the JSON and the derived columns
stay outside the lock. A thread stays on its lane from row to row, with no hand-off per
request (a hand-off wakes another thread: more CPU than the bookkeeping itself at ~1,000
requests/s).

A transient failure puts the row on a schedule (`delayed`) for its backoff instead of holding
a thread asleep; a `Retry-After` pauses the whole run through the shared limiter.

The shard's own thread (the one that called `run`) does the housekeeping: finished rows are
appended to the shard's checkpoint in small flushed batches (every `CHECKPOINT_ROWS` rows or
`CHECKPOINT_SECONDS`), so a killed run repeats only the rows that were in flight or in the last
batch; progress events go to the coordinator every `EVENT_SECONDS`; lanes are added when other
shards end and this one's share grows; rows parked for a repeated body's answer from an
earlier shard (answers.py) are looked up every `PARKED_CHECK_SECONDS`. When every row has
an outcome, the result shard is written atomically and the checkpoint removed. When the run
stops (Ctrl+C, a dead coordinator), in-flight calls finish, the checkpoint is flushed, and
the shard is left for the next run.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline import schema
from pipeline.api import cardgenius
from pipeline.api.client import Answer
from pipeline.errors import CallError, PermanentError, TransientError
from pipeline.run.process import WorkerProcess
from pipeline.run.tasks import ShardReport, ShardTask
from pipeline.state.answers import RELEASED, body_keys
from pipeline.state.store import Checkpoint, read_checkpoint, read_parquet, write_parquet_atomic
from pipeline.traffic.limiter import OTHER, SUCCESS, TRANSIENT
from pipeline.traffic.retry import error_kind
from pipeline.view.progress import EVENT_SECONDS, WorkerEvent

CHECKPOINT_ROWS = 50
CHECKPOINT_SECONDS = 1.0
PARKED_CHECK_SECONDS = 0.25
"""How often rows parked for an earlier shard's answer look for it in the store."""
HOUSEKEEPING_SECONDS = 0.1
"""How often the shard's thread looks at the share of in-flight slots, checkpoints, events."""


@dataclass
class _Attempt:
    """One call for one row, as a lane made it."""

    row: dict[str, Any]
    attempts: int
    """Attempts made for the row, this one included."""
    outcome: dict[str, Any] | None = None
    """The answered row's outcome, derived columns included (built outside the lock)."""
    error: CallError | None = None
    stopped: bool = False
    """The run stopped before the call was made."""


class ShardRun:
    def __init__(self, process: WorkerProcess, task: ShardTask) -> None:
        self.p = process
        self.task = task
        self.clock = time.monotonic
        self.cond = threading.Condition(threading.Lock())
        # Under `cond`: the work, the outcomes, what is not yet saved or reported.
        self.ready: deque[tuple[dict[str, Any], int]] = deque()
        self.delayed: list[tuple[float, int, dict[str, Any], int]] = []
        self.in_pool = 0
        """Rows taken by a lane and not yet recorded."""
        self.lanes = 0
        self.target = 0
        """Lanes wanted: the process's share of the in-flight slots (set by the shard's thread)."""
        self.outcomes: dict[int, dict[str, Any]] = {}
        self.unsaved: list[dict[str, Any]] = []
        self.delta = _Delta()
        self.session_rows = 0
        self.session_counts: Counter[str] = Counter()
        self.session_requests = 0
        self.shard_rows = 0
        # Never pay twice (answers.py): rows whose body is in flight here wait for its answer.
        self.leaders: dict[int, int] = {}
        self.followers: dict[int, list[dict[str, Any]]] = {}
        self.parked: dict[int, list[dict[str, Any]]] = {}
        """Rows waiting for the answer to a body whose owner is in an earlier shard."""
        self.last_parked_check = 0.0
        self.answered: dict[int, dict[str, Any]] = {}
        """Answers to repeated bodies got in this shard (`new_answers`: those not yet stored)."""
        self.new_answers: dict[int, dict[str, Any]] = {}
        self.lane_error: BaseException | None = None
        # The shard's own thread only.
        self.checkpoint: Checkpoint | None = None
        self.last_flush = self.last_event = self.clock()

    def run(self) -> ShardReport:
        layout, name = self.p.layout, self.task.name
        table = read_parquet(layout.input_shard(name))
        rows = table.to_pylist()
        self.shard_rows = len(rows)
        if self.p.repeated:  # only rows whose body occurs more than once take part in dedupe
            for row, key in zip(rows, body_keys(table, self.p.settings.mapping), strict=True):
                if key in self.p.repeated:
                    row["_key"] = key
        if self.task.retry_failed:
            for old in read_parquet(layout.result_shard(name)).to_pylist():
                if old[schema.STATUS] != schema.FAILED:
                    self.outcomes[old[schema.ROW]] = old
        self.outcomes.update(read_checkpoint(layout.checkpoint(name), schema.ROW))
        for row in rows:
            if row[schema.ROW] in self.outcomes:
                continue
            self.session_rows += 1
            if row[schema.INVALID] is not None:
                self._finish(self._outcome(row, schema.INVALID_STATE, error=row[schema.INVALID]))
            else:
                self.ready.append((row, 0))
        self.p.limiter.shard_started()
        try:
            self._loop()
        finally:
            self.p.limiter.shard_ended()
            self._stop_lanes()
            self._flush(self._take_unsaved())
            if self.checkpoint is not None:
                self.checkpoint.close()
        return self._conclude(rows)

    # The shard's own thread.

    def _loop(self) -> None:
        threads, stop, limiter = self.p.settings.threads, self.p.stop, self.p.limiter
        while True:
            with self.cond:
                if self.lane_error is not None:
                    raise self.lane_error
                self.target = min(threads, limiter.share())
                while self.lanes < self.target and self._work_left() and not stop.is_set():
                    self.lanes += 1
                    self.p.pool.submit(self._lane)
                if self.lanes == 0 and (stop.is_set() or not (self._work_left() or self.parked)):
                    return
                self.cond.wait(HOUSEKEEPING_SECONDS)
                now = self.clock()
                parked = None
                if self.parked and now - self.last_parked_check >= PARKED_CHECK_SECONDS:
                    parked, self.last_parked_check = list(self.parked), now
                flush = len(self.unsaved) >= CHECKPOINT_ROWS or (
                    bool(self.unsaved) and now - self.last_flush >= CHECKPOINT_SECONDS
                )
                saved = self._take_unsaved() if flush else None
                event = self._take_event() if now - self.last_event >= EVENT_SECONDS else None
            if saved is not None:
                self._flush(saved)
            if event is not None:
                self.p.events.put(event)
            if parked:
                self._check_parked(parked)

    def _check_parked(self, keys: list[int]) -> None:
        """Settle parked rows whose answer has come (or whose owner will not send)."""
        assert self.p.answers is not None
        found = self.p.answers.get_many(keys)
        for key in keys:
            if key not in found and self._owner_done(key):
                found[key] = RELEASED  # its shard finished without an answer for the body
        if not found:
            return
        with self.cond:
            for key, answer in found.items():
                self.answered.setdefault(key, answer)
                # Back to the queue: a lane copies the answer, or sends (released).
                self.ready.extend((row, 0) for row in self.parked.pop(key, []))
            self.cond.notify_all()

    def _owner_done(self, key: int) -> bool:
        """The owner has its outcome (so no answer is coming, if none is stored by now)."""
        owner = self.p.repeated.get(key)
        if owner is None:
            return True
        row, shard = owner
        name = self.p.layout.shard_name(shard)
        if name == self.task.name:
            return row in self.outcomes
        return self.p.layout.result_shard(name).exists()

    def _stop_lanes(self) -> None:
        """Wait for the lanes to end (they end on `stop`, or when the work is done)."""
        with self.cond:
            self.target = 0
            self.cond.notify_all()
            while self.lanes:
                self.cond.wait(HOUSEKEEPING_SECONDS)

    def _take_unsaved(
        self,
    ) -> tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]:
        saved = (self.unsaved, self.new_answers)
        self.unsaved, self.new_answers = [], {}
        self.last_flush = self.clock()
        return saved

    def _flush(self, saved: tuple[list[dict[str, Any]], dict[int, dict[str, Any]]]) -> None:
        outcomes, answers = saved
        if answers and self.p.answers is not None:
            self.p.answers.put_many(answers)
        if outcomes:
            if self.checkpoint is None:
                self.checkpoint = Checkpoint(self.p.layout.checkpoint(self.task.name))
            self.checkpoint.append(outcomes)

    # The lanes, on the request threads.

    def _lane(self) -> None:
        try:
            with self.cond:
                work = self._next()
            while work is not None:
                attempt = self._attempt(*work)
                with self.cond:  # once per request: record this one, take the next
                    self.in_pool -= 1
                    if self._handle(attempt) or self.in_pool == 0:
                        self.cond.notify_all()  # new work, a retry to wait for, or all done
                    elif len(self.unsaved) == CHECKPOINT_ROWS:
                        self.cond.notify_all()  # a checkpoint batch is ready
                    work = self._next()
        except BaseException as exc:  # a bug: the shard's thread raises it
            with self.cond:
                self.lane_error = exc
                self.target = 0
        finally:
            with self.cond:
                self.lanes -= 1
                self.cond.notify_all()

    def _next(self) -> tuple[dict[str, Any], int] | None:
        """The next row for a lane (under the lock), with its attempts so far; None when the
        lane should end."""
        stop = self.p.stop
        while self.lanes <= self.target and not stop.is_set():
            self._promote_due()
            while self.ready:
                row, attempts = self.ready.popleft()
                if attempts == 0 and self._settled_by_copy(row):
                    continue
                self.in_pool += 1
                return row, attempts
            if not self._work_left():
                return None
            self.cond.wait(self._wait_time())
        return None

    def _work_left(self) -> bool:
        return bool(self.ready or self.delayed or self.in_pool)

    def _wait_time(self) -> float:
        if self.delayed:
            return max(0.0, min(EVENT_SECONDS, self.delayed[0][0] - self.clock()))
        return EVENT_SECONDS

    def _promote_due(self) -> None:
        if not self.delayed:
            return
        now = self.clock()
        while self.delayed and self.delayed[0][0] <= now:
            _, _, row, attempts = heapq.heappop(self.delayed)
            self.ready.append((row, attempts))

    def _attempt(self, row: dict[str, Any], attempts: int) -> _Attempt:
        """Wait for the limiter, make one call (outside the lock)."""
        attempt = _Attempt(row, attempts + 1)
        limiter = self.p.limiter
        permit = None if self.p.stop.is_set() else limiter.acquire()
        if permit is None:
            attempt.stopped = True
            return attempt
        went, answer = OTHER, None
        try:
            answer = self.p.client().call(self.p.body(row))
            went = SUCCESS
        except CallError as exc:
            attempt.error = exc
            if isinstance(exc, TransientError) and exc.http_status != 429:
                went = TRANSIENT
        finally:
            limiter.release(permit, went)
        if answer is not None:  # the row's outcome, built here to keep the lock short
            attempt.outcome = self._answered_outcome(row, attempt.attempts, answer)
        # The parsed answer (~50 lists and dicts) dies here, with the call that made it. Kept
        # on the attempt until the lane's next call returned, 100 lanes' answers outlived
        # collections of the young generation and made them 3 times as frequent and 10 times
        # as costly (gc callbacks: ~0.6 s of CPU per 5,000 requests, against 0.07 s).
        return attempt

    def _answered_outcome(
        self, row: dict[str, Any], attempts: int, answer: Answer
    ) -> dict[str, Any]:
        state = schema.OK if answer.cards else schema.NO_CARDS
        outcome = self._outcome(row, state, answer.http_status, attempts, answer.latency_ms)
        outcome.update(cardgenius.derive(answer.cards, self.p.mapped, self.p.settings.top_n))
        return outcome

    def _handle(self, a: _Attempt) -> bool:
        """Record an attempt (under the lock); True when it added work for the lanes."""
        if a.stopped:
            return False
        self.delta.requests += 1
        self.session_requests += 1
        if a.outcome is not None:
            return self._answered(a, a.outcome)
        error = a.error
        assert error is not None
        self.delta.errors[error_kind(error.http_status, error.message)] += 1
        policy, limiter = self.p.settings.policy, self.p.limiter
        if isinstance(error, PermanentError):
            return self._failed(a, error)
        if error.retry_after is not None and error.retry_after > policy.retry_after_max:
            limiter.trip(policy.retry_after_max)  # too long to honour: treat as an outage
        if limiter.outage_seconds() > 0:
            # The API is down for everyone: this failure says nothing about the row, so it
            # does not use up an attempt. The breaker holds the row until the API is back.
            self._retry_later(a.row, a.attempts - 1, 0.0)
            return True
        if not policy.should_retry(a.attempts):
            return self._failed(a, error)
        self.delta.retries += 1
        delay = policy.wait_after(a.attempts, error.retry_after, self.p.rng)
        if error.retry_after is not None:
            limiter.pause_for(delay)
        self._retry_later(a.row, a.attempts, delay)
        return True

    def _answered(self, a: _Attempt, outcome: dict[str, Any]) -> bool:
        self.delta.latencies.append(outcome[schema.LATENCY_MS])
        self._finish(outcome)
        return self._answer_followers(a.row, outcome, final=True)

    def _failed(self, a: _Attempt, error: CallError) -> bool:
        outcome = self._outcome(a.row, schema.FAILED, error.http_status, a.attempts)
        outcome[schema.ERROR] = error.message
        self._finish(outcome)
        return self._answer_followers(a.row, outcome, final=isinstance(error, PermanentError))

    def _settled_by_copy(self, row: dict[str, Any]) -> bool:
        """True when the row needs no request of its own: its body's answer is known (copied
        now), in flight in this shard (the row follows it), or owned by a row of an earlier
        shard (the row is parked until its answer is stored)."""
        key = row.get("_key")
        if key is None or self.p.answers is None:
            return False
        if self.leaders.get(key) == row[schema.ROW]:
            return False  # the leader itself, back after an outage
        if key in self.leaders:
            self.followers.setdefault(key, []).append(row)
            return True
        known = self.answered.get(key) or self.p.answers.get(key)
        if known is not None and known != RELEASED:
            if not (self.task.retry_failed and known[schema.STATUS] == schema.FAILED):
                self._finish(self._copy(row, known))
                return True
        elif known is None and self._owner_elsewhere(key, row):
            self.parked.setdefault(key, []).append(row)
            return True
        self.leaders[key] = row[schema.ROW]
        return False

    def _owner_elsewhere(self, key: int, row: dict[str, Any]) -> bool:
        """The body's owner is another row, to be waited for (not in `rerun-failed`)."""
        owner = self.p.repeated.get(key)
        return owner is not None and owner[0] != row[schema.ROW] and not self.task.retry_failed

    def _answer_followers(
        self, row: dict[str, Any], outcome: dict[str, Any], *, final: bool
    ) -> bool:
        """A leader's outcome: copy it to the rows waiting on the same body, or, when it is not
        final (transient failures ran out), let them try for themselves (True: new work)."""
        key = row.get("_key")
        if key is None or self.leaders.get(key) != row[schema.ROW]:
            return False
        del self.leaders[key]
        waiting = self.followers.pop(key, [])
        if not final:
            self.new_answers[key] = self.answered[key] = RELEASED  # twins elsewhere: go ahead
            self.ready.extend((r, 0) for r in waiting)
            return bool(waiting)
        answer = {k: v for k, v in outcome.items() if k in self.p.copied}
        self.new_answers[key] = self.answered[key] = answer
        for follower in waiting:
            self._finish(self._copy(follower, answer))
        return False

    def _copy(self, row: dict[str, Any], answer: dict[str, Any]) -> dict[str, Any]:
        self.delta.deduped += 1
        outcome = self._outcome(row, answer[schema.STATUS], answer[schema.HTTP_STATUS])
        outcome.update(answer)
        outcome[schema.ATTEMPTS] = 0
        outcome[schema.LATENCY_MS] = None
        return outcome

    def _retry_later(self, row: dict[str, Any], attempts: int, delay: float) -> None:
        heapq.heappush(self.delayed, (self.clock() + delay, row[schema.ROW], row, attempts))

    def _finish(self, outcome: dict[str, Any]) -> None:
        self.outcomes[outcome[schema.ROW]] = outcome
        self.unsaved.append(outcome)
        self.delta.counts[outcome[schema.STATUS]] += 1
        self.session_counts[outcome[schema.STATUS]] += 1

    def _take_event(self, state: str | None = None) -> WorkerEvent:
        """What happened since the last event (under the lock, or after the lanes ended)."""
        if state is None:
            state = "working"
            if not self.ready and self.in_pool == 0 and self.delayed:
                state = "backing off"
            if self.p.limiter.paused_for() > 0:
                state = "paused"
        d = self.delta
        self.delta = _Delta()
        self.last_event = self.clock()
        return WorkerEvent(
            pid=os.getpid(),
            shard=self.task.name,
            state=state,
            shard_rows_done=len(self.outcomes),
            shard_rows=self.shard_rows,
            counts=dict(d.counts),
            requests=d.requests,
            retries=d.retries,
            deduped=d.deduped,
            errors=dict(d.errors),
            latencies_ms=tuple(d.latencies),
        )

    def _conclude(self, rows: list[dict[str, Any]]) -> ShardReport:
        layout, name = self.p.layout, self.task.name
        if len(self.outcomes) < len(rows):  # stopped midway: the checkpoint keeps what is done
            self.p.events.put(self._take_event())
            return ShardReport(name, False, requests=self.session_requests)
        ordered = [self.outcomes[row[schema.ROW]] for row in rows]
        table = pa.Table.from_pylist(ordered, schema=self.p.result_schema)
        write_parquet_atomic(table, layout.result_shard(name))
        layout.checkpoint(name).unlink(missing_ok=True)
        self.p.events.put(self._take_event("done"))
        counts = Counter(row[schema.STATUS] for row in ordered)
        recovered = self.session_counts[schema.OK] + self.session_counts[schema.NO_CARDS]
        return ShardReport(
            name, True, dict(counts), self.session_requests, self.session_rows, recovered
        )

    def _outcome(
        self,
        row: dict[str, Any],
        status: str,
        http_status: int | None = None,
        attempts: int = 0,
        latency_ms: float | None = None,
        *,
        error: str | None = None,
    ) -> dict[str, Any]:
        s = self.p.settings
        outcome = {name: row[name] for name in (schema.ROW, s.id_column, *s.value_columns)}
        outcome[schema.STATUS] = status
        outcome[schema.HTTP_STATUS] = http_status
        outcome[schema.ATTEMPTS] = attempts
        outcome[schema.LATENCY_MS] = latency_ms
        outcome[schema.ERROR] = error
        return outcome


class _Delta:
    """What happened since the last event."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.requests = 0
        self.retries = 0
        self.deduped = 0
        self.latencies: list[float] = []
