"""One shard in one worker process: dispatch, retry schedule, checkpoints, result shard.

The shard's own thread is the only one that decides anything. It hands rows to the process's
request threads, which just ask the shared limiter and make one call each (`_attempt`), and
gets each attempt back on a queue. A transient failure puts the row back on a schedule
(`delayed`) for its backoff instead of holding a thread asleep; a `Retry-After` pauses the
whole run through the shared limiter.

Finished rows are appended to the shard's checkpoint in small flushed batches (every
`CHECKPOINT_ROWS` rows or `CHECKPOINT_SECONDS`), so a killed run repeats only the rows that
were in flight or in the last batch. When every row has an outcome, the result shard is
written atomically and the checkpoint removed. When the run stops (Ctrl+C, a dead
coordinator), in-flight calls finish, the checkpoint is flushed, and the shard is left for the
next run.
"""

from __future__ import annotations

import heapq
import os
import queue
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from pipeline import cardgenius, schema
from pipeline.answers import body_keys
from pipeline.client import Answer
from pipeline.errors import CallError, PermanentError, TransientError
from pipeline.progress import WorkerEvent
from pipeline.ratelimit import OTHER, SUCCESS, TRANSIENT
from pipeline.retry import error_kind
from pipeline.store import Checkpoint, read_checkpoint, read_parquet, write_parquet_atomic
from pipeline.worker import ShardReport, ShardTask, WorkerProcess

CHECKPOINT_ROWS = 50
CHECKPOINT_SECONDS = 1.0
EVENT_SECONDS = 0.5


@dataclass
class _Attempt:
    """One call for one row, as a request thread hands it back."""

    row: dict[str, Any]
    attempts: int
    """Attempts made for the row, this one included."""
    answer: Answer | None = None
    error: CallError | None = None
    stopped: bool = False
    """The run stopped before the call was made."""


class ShardRun:
    def __init__(self, process: WorkerProcess, task: ShardTask) -> None:
        self.p = process
        self.task = task
        self.clock = time.monotonic
        self.finished: queue.SimpleQueue[_Attempt] = queue.SimpleQueue()
        self.ready: deque[tuple[dict[str, Any], int]] = deque()
        self.delayed: list[tuple[float, int, dict[str, Any], int]] = []
        self.in_pool = 0
        self.outcomes: dict[int, dict[str, Any]] = {}
        self.unsaved: list[dict[str, Any]] = []
        self.checkpoint: Checkpoint | None = None
        self.last_flush = self.last_event = self.clock()
        self.delta = _Delta()
        self.session_rows = 0
        self.session_counts: Counter[str] = Counter()
        self.session_requests = 0
        self.shard_rows = 0
        # Never pay twice (answers.py): rows whose body is in flight here wait for its answer.
        self.leaders: dict[int, int] = {}
        self.followers: dict[int, list[dict[str, Any]]] = {}
        self.new_answers: dict[int, dict[str, Any]] = {}

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
            self._flush()
            if self.checkpoint is not None:
                self.checkpoint.close()
        return self._conclude(rows)

    def _loop(self) -> None:
        threads, stop = self.p.settings.threads, self.p.stop
        while True:
            self._promote_due()
            share = min(threads, self.p.limiter.share())
            while self.in_pool < share and self.ready and not stop.is_set():
                row, attempts = self.ready.popleft()
                if attempts == 0 and self._settled_by_copy(row):
                    continue
                self.in_pool += 1
                self.p.pool.submit(self._attempt, row, attempts + 1)
            if self.in_pool == 0 and (stop.is_set() or not (self.ready or self.delayed)):
                return
            try:
                self._handle(self.finished.get(timeout=self._wait_time()))
                while True:
                    self._handle(self.finished.get_nowait())
            except queue.Empty:
                pass
            self._housekeeping()

    def _wait_time(self) -> float:
        if self.delayed and (self.in_pool < self.p.settings.threads):
            return max(0.0, min(EVENT_SECONDS, self.delayed[0][0] - self.clock()))
        return EVENT_SECONDS

    def _promote_due(self) -> None:
        now = self.clock()
        while self.delayed and self.delayed[0][0] <= now:
            _, _, row, attempts = heapq.heappop(self.delayed)
            self.ready.append((row, attempts))

    def _attempt(self, row: dict[str, Any], attempts: int) -> None:
        """On a request thread: wait for the limiter, make one call, hand the result back."""
        attempt = _Attempt(row, attempts)
        limiter = self.p.limiter
        try:
            permit = None if self.p.stop.is_set() else limiter.acquire()
            if permit is None:
                attempt.stopped = True
                return
            outcome = OTHER
            try:
                attempt.answer = self.p.client().call(self.p.body(row))
                outcome = SUCCESS
            except CallError as exc:
                attempt.error = exc
                if isinstance(exc, TransientError) and exc.http_status != 429:
                    outcome = TRANSIENT
            finally:
                limiter.release(permit, outcome)
        finally:
            self.finished.put(attempt)

    def _handle(self, a: _Attempt) -> None:
        self.in_pool -= 1
        if a.stopped:
            return
        self.delta.requests += 1
        self.session_requests += 1
        if a.answer is not None:
            self._answered(a, a.answer)
            return
        error = a.error
        assert error is not None
        self.delta.errors[error_kind(error.http_status, error.message)] += 1
        policy, limiter = self.p.settings.policy, self.p.limiter
        if isinstance(error, PermanentError):
            self._failed(a, error)
            return
        if error.retry_after is not None and error.retry_after > policy.retry_after_max:
            limiter.trip(policy.retry_after_max)  # too long to honour: treat as an outage
        if limiter.outage_seconds() > 0:
            # The API is down for everyone: this failure says nothing about the row, so it
            # does not use up an attempt. The breaker holds the row until the API is back.
            self._retry_later(a.row, a.attempts - 1, 0.0)
            return
        if not policy.should_retry(a.attempts):
            self._failed(a, error)
            return
        self.delta.retries += 1
        delay = policy.wait_after(a.attempts, error.retry_after, self.p.rng)
        if error.retry_after is not None:
            limiter.pause_for(delay)
        self._retry_later(a.row, a.attempts, delay)

    def _answered(self, a: _Attempt, answer: Answer) -> None:
        self.delta.latencies.append(answer.latency_ms)
        derived = cardgenius.derive(answer.cards, self.p.mapped, self.p.settings.top_n)
        state = schema.OK if answer.cards else schema.NO_CARDS
        outcome = self._outcome(a.row, state, answer.http_status, a.attempts, answer.latency_ms)
        outcome.update(derived)
        self._finish(outcome)
        self._answer_followers(a.row, outcome, final=True)

    def _failed(self, a: _Attempt, error: CallError) -> None:
        outcome = self._outcome(a.row, schema.FAILED, error.http_status, a.attempts)
        outcome[schema.ERROR] = error.message
        self._finish(outcome)
        self._answer_followers(a.row, outcome, final=isinstance(error, PermanentError))

    def _settled_by_copy(self, row: dict[str, Any]) -> bool:
        """True when the row needs no request of its own: its body's answer is known (copied
        now) or in flight in this shard (the row waits for it)."""
        key = row.get("_key")
        if key is None or self.p.answers is None:
            return False
        if self.leaders.get(key) == row[schema.ROW]:
            return False  # the leader itself, back after an outage
        if key in self.leaders:
            self.followers.setdefault(key, []).append(row)
            return True
        known = self.new_answers.get(key) or self.p.answers.get(key)
        if known is not None and not (
            self.task.retry_failed and known[schema.STATUS] == schema.FAILED
        ):
            self._finish(self._copy(row, known))
            return True
        self.leaders[key] = row[schema.ROW]
        return False

    def _answer_followers(
        self, row: dict[str, Any], outcome: dict[str, Any], *, final: bool
    ) -> None:
        """A leader's outcome: copy it to the rows waiting on the same body, or, when it is not
        final (transient failures ran out), let them try for themselves."""
        key = row.get("_key")
        if key is None or self.leaders.get(key) != row[schema.ROW]:
            return
        del self.leaders[key]
        waiting = self.followers.pop(key, [])
        if not final:
            self.ready.extend((r, 0) for r in waiting)
            return
        answer = {k: v for k, v in outcome.items() if k in self.p.copied}
        self.new_answers[key] = answer
        for follower in waiting:
            self._finish(self._copy(follower, answer))

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

    def _housekeeping(self) -> None:
        now = self.clock()
        if len(self.unsaved) >= CHECKPOINT_ROWS or (
            self.unsaved and now - self.last_flush >= CHECKPOINT_SECONDS
        ):
            self._flush()
        if now - self.last_event >= EVENT_SECONDS:
            self._send_event()

    def _flush(self) -> None:
        if self.new_answers and self.p.answers is not None:
            self.p.answers.put_many(self.new_answers)
            self.new_answers = {}
        if self.unsaved:
            if self.checkpoint is None:
                self.checkpoint = Checkpoint(self.p.layout.checkpoint(self.task.name))
            self.checkpoint.append(self.unsaved)
            self.unsaved = []
        self.last_flush = self.clock()

    def _send_event(self, state: str | None = None) -> None:
        if state is None:
            state = "working"
            if not self.ready and self.in_pool == 0 and self.delayed:
                state = "backing off"
            if self.p.limiter.paused_for() > 0:
                state = "paused"
        d = self.delta
        self.p.events.put(
            WorkerEvent(
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
        )
        self.delta = _Delta()
        self.last_event = self.clock()

    def _conclude(self, rows: list[dict[str, Any]]) -> ShardReport:
        layout, name = self.p.layout, self.task.name
        if len(self.outcomes) < len(rows):  # stopped midway: the checkpoint keeps what is done
            self._send_event()
            return ShardReport(name, False, requests=self.session_requests)
        ordered = [self.outcomes[row[schema.ROW]] for row in rows]
        table = pa.Table.from_pylist(ordered, schema=self.p.result_schema)
        write_parquet_atomic(table, layout.result_shard(name))
        layout.checkpoint(name).unlink(missing_ok=True)
        self._send_event("done")
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
