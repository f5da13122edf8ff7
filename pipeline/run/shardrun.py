"""One shard in one worker process: its lanes, its housekeeping, its result shard.

The shard runs on up to `share` lanes: a lane is a loop on one of the process's request
threads that takes a row, asks the shared limiter, makes the call, builds the row's outcome,
then records it and takes the next row in one hold of the shard's lock (`cond`). The call,
the JSON and the derived columns stay outside the lock. A thread stays on its lane from row
to row: a hand-off per request costs more CPU than the bookkeeping (BENCHMARKS.md).

The decisions are small parts, each guarded by `cond`: the retry schedule (schedule.py), the
twins' dedupe book (dedupe.py), checkpoint batching (batching.py) and the event accounting
(tally.py). A transient failure puts the row on the schedule for its backoff instead of
holding a thread asleep; a 429 goes to the shared limiter, which pauses the whole run only
as throttle.py's rule says (another status's `Retry-After` pauses it).

When the shard starts, rows whose body has an answer in the answer store kept across runs are
settled from it at once, in one batch of lookups (reuse.py); only the others are queued.

The shard's own thread (the one that called `run`) does the housekeeping: it writes
checkpoint batches, sends progress events, adds lanes when other shards end and this one's
share grows, and looks up parked twins' answers. When every row has an outcome, the result
shard is written atomically and the checkpoint removed. When the run stops (Ctrl+C, a dead
coordinator), in-flight calls finish, the checkpoint is flushed, and the shard is left for
the next run.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from pipeline import schema
from pipeline.errors import CallError, CredentialsRefused, ErrorKind, PermanentError
from pipeline.run.attempt import Attempt, make_attempt
from pipeline.run.batching import CheckpointBatch
from pipeline.run.dedupe import COPY, WAIT, DedupeBook
from pipeline.run.outcomes import copied_outcome, new_outcome
from pipeline.run.process import WorkerProcess
from pipeline.run.reuse import OFFLINE_ERROR, New
from pipeline.run.schedule import RetrySchedule
from pipeline.run.shardfiles import BODY, KEY, Saver, parked_answers, read_shard, write_result
from pipeline.run.tally import DONE, ShardTally, shard_state
from pipeline.run.tasks import ShardReport, ShardTask
from pipeline.state.cache import Stored
from pipeline.traffic.refusal import FAIL, HOLD, REFUSE, RELEASE
from pipeline.view.progress import EVENT_SECONDS, WorkerEvent

HOUSEKEEPING_SECONDS = 0.1
"""How often the shard's thread looks at the share of in-flight slots, checkpoints, events."""

Row = dict[str, Any]


class ShardRun:
    def __init__(
        self, process: WorkerProcess, task: ShardTask, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.process = process
        self.task = task
        self.clock = clock
        s = process.settings
        self.columns = (schema.ROW, s.id_column, *s.value_columns)
        """The input row's columns an outcome keeps."""
        self.cond = threading.Condition(threading.Lock())
        # Under `cond`: the work, the outcomes, what is not yet saved or reported.
        self.ready: deque[tuple[Row, int]] = deque()
        self.retries = RetrySchedule(clock)
        self.in_pool = 0
        """Rows taken by a lane and not yet recorded."""
        self.lanes = 0
        self.target = 0
        """Lanes wanted: the process's share of the in-flight slots (set by the shard's thread)."""
        self.outcomes: dict[int, Row] = {}
        self.batch = CheckpointBatch(clock=clock)
        self.tally = ShardTally(task.name, clock=clock)
        self.twins: DedupeBook | None = None
        if process.answers is not None:
            self.twins = DedupeBook(
                process.repeated,
                process.answers.get,
                process.copied,
                retry_failed=task.retry_failed,
                clock=clock,
            )
        self.new_stored: list[New] = []
        """New good answers for the answer store kept across runs (reuse.py)."""
        self.lane_error: BaseException | None = None
        self.held: list[tuple[Attempt, CallError]] = []
        """Rows whose permanent error waits for the judge's verdict (traffic/refusal.py)."""
        self.refused = ""
        self.saver = Saver(process, task.name)
        """The shard's own thread only."""

    def run(self) -> ShardReport:
        rows = self._load()
        self.process.limiter.shard_started()
        try:
            self._loop()
            with self.cond:
                self._settle_held()
        finally:
            self.process.limiter.shard_ended()
            self._stop_lanes()
            self.saver.save(*self._take_unsaved())
            self.saver.close()
        return self._conclude(rows)

    def _load(self) -> list[Row]:
        """The shard's rows; those without an outcome yet are queued (or settled, if invalid)."""
        rows, self.outcomes = read_shard(self.process, self.task.name, self.task.retry_failed)
        self.tally.shard_rows = len(rows)
        todo = [row for row in rows if row[schema.ROW] not in self.outcomes]
        reuse = self.process.reuse
        stored = reuse.look_up(row.get(BODY) for row in todo) if reuse is not None else {}
        for row in todo:
            self.tally.this_run_rows += 1
            if row[schema.INVALID] is not None:
                error = row[schema.INVALID]
                self._finish(new_outcome(row, self.columns, schema.INVALID_STATE, error=error))
            elif not self._reused(row, stored):
                self.ready.append((row, 0))
        return rows

    def _reused(self, row: Row, stored: dict[int, Stored]) -> bool:
        """Settle a row from the answer store when its body's answer is there (or, offline,
        as failed when it is not); False: the row is to be requested."""
        reuse, key = self.process.reuse, row.get(BODY)
        if reuse is None or key is None:
            return False
        found = stored.get(key)
        answer = reuse.outcome(found) if found is not None else None
        if found is not None and answer is not None:
            # A request saved, unless dedupe would have saved it anyway (a twin, not the owner).
            owner = self.process.repeated.get(key) if self.process.settings.dedupe else None
            saved = owner is None or owner[0] == row[schema.ROW]
            self.tally.reused(found.answered_at, saved=saved)
            self._finish(self._copy(row, answer, deduped=not saved))
            return True
        if reuse.offline:
            failed = new_outcome(row, self.columns, schema.FAILED, error=OFFLINE_ERROR)
            failed[schema.ERROR_KIND] = ErrorKind.OTHER.value
            self._finish(failed)
            return True
        return False

    # The shard's own thread.

    def _loop(self) -> None:
        process, twins = self.process, self.twins
        threads, stop, limiter = process.settings.threads, process.stop, process.limiter
        while True:
            with self.cond:
                if self.lane_error is not None:
                    raise self.lane_error
                self.target = min(threads, limiter.share())
                while self.lanes < self.target and self._work_left() and not stop.is_set():
                    self.lanes += 1
                    process.pool.submit(self._lane)
                parked = twins is not None and bool(twins.parked)
                if self.lanes == 0 and (stop.is_set() or not (self._work_left() or parked)):
                    return
                self.cond.wait(HOUSEKEEPING_SECONDS)
                now = self.clock()
                keys = twins.parked_due(now) if twins is not None else []
                saved = self._take_unsaved() if self.batch.due(now) else None
                event = self._take_event() if self.tally.timer.due(now) else None
            if saved is not None:
                self.saver.save(*saved)
            if event is not None:
                process.events.put(event)
            if keys:
                self._check_parked(keys)

    def _check_parked(self, keys: list[int]) -> None:
        """Settle parked rows whose answer has come (or whose owner will not send)."""
        assert self.twins is not None
        found = parked_answers(self.process, self.task.name, keys, self.outcomes)
        if found:
            with self.cond:
                self.ready.extend((row, 0) for row in self.twins.unpark(found))
                self.cond.notify_all()

    def _stop_lanes(self) -> None:
        """Wait for the lanes to end (they end on `stop`, or when the work is done)."""
        with self.cond:
            self.target = 0
            self.cond.notify_all()
            while self.lanes:
                self.cond.wait(HOUSEKEEPING_SECONDS)

    def _take_unsaved(self) -> tuple[list[Row], dict[int, Row], list[New]]:
        answers = self.twins.take_new_answers() if self.twins is not None else {}
        stored, self.new_stored = self.new_stored, []
        return self.batch.take(), answers, stored

    # The lanes, on the request threads.

    def _lane(self) -> None:
        try:
            with self.cond:
                work = self._next()
            while work is not None:
                attempt = make_attempt(self.process, *work, self.columns)
                with self.cond:  # once per request: record this one, take the next
                    self.in_pool -= 1
                    if self._handle(attempt) or self.in_pool == 0:
                        self.cond.notify_all()  # new work, a retry to wait for, or all done
                    elif self.batch.just_filled:
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

    def _next(self) -> tuple[Row, int] | None:
        """The next row for a lane (under the lock), with its attempts so far; None when the
        lane should end."""
        stop, ready, retries = self.process.stop, self.ready, self.retries
        while self.lanes <= self.target and not stop.is_set():
            if retries:
                ready.extend(retries.pop_due())
            while ready:
                row, attempts = ready.popleft()
                if attempts == 0 and self._settled_by_copy(row):
                    continue
                self.in_pool += 1
                return row, attempts
            if not self._work_left():
                return None
            self.cond.wait(retries.wait_time(EVENT_SECONDS))
        return None

    def _work_left(self) -> bool:
        return bool(self.ready or self.retries or self.in_pool)

    def _handle(self, a: Attempt) -> bool:
        """Record an attempt (under the lock); True when it added work for the lanes."""
        if a.stopped:
            return False
        self.tally.request()
        if a.outcome is not None:
            self.tally.answered(a.outcome[schema.LATENCY_MS])
            self._finish(a.outcome)
            if self.process.reuse is not None and a.row.get(BODY) is not None:
                self.new_stored.append((a.row[BODY], a.answered_at, a.outcome))
            released = self.process.judge.answered() and self._release_held()
            return self._answer_followers(a.row, a.outcome, final=True) or released
        error = a.error
        assert error is not None
        self.tally.error(error.kind.value)
        policy, limiter = self.process.settings.policy, self.process.limiter
        if isinstance(error, CredentialsRefused):
            self._refuse(f"the API refused the credentials: {error.message}")
            return False  # the row stays pending: it is not its fault
        if isinstance(error, PermanentError):
            return self._permanent(a, error)
        if error.retry_after is not None and error.retry_after > policy.retry_after_max:
            limiter.trip(policy.retry_after_max)  # too long to honour: treat as an outage
        if error.http_status == 429:  # the partner's word on the run's pace (throttle.py)
            too_long = (error.retry_after or 0) > policy.retry_after_max  # the trip has it
            limiter.throttled(None if too_long else error.retry_after)
        if limiter.outage_seconds() > 0:
            # The API is down for everyone: this failure says nothing about the row, so it
            # does not use up an attempt. The breaker holds the row until the API is back.
            self.retries.add(a.row, a.attempts - 1, 0.0)
            return True
        if not policy.should_retry(a.attempts):
            return self._failed(a, error)
        self.tally.retry()
        delay = policy.wait_after(a.attempts, error.retry_after, self.process.rng)
        if error.retry_after is not None and error.http_status != 429:
            limiter.pause_for(delay)
        self.retries.add(a.row, a.attempts, delay)
        return True

    def _permanent(self, a: Attempt, error: CallError) -> bool:
        """A permanent error: the row fails, unless the judge holds it (the API may refuse
        the run). `rerun-failed` retries known failures: they fail again as before."""
        judge = self.process.judge
        verdict = FAIL if self.task.retry_failed else judge.permanent(error.message)
        if verdict in (HOLD, REFUSE):
            self.held.append((a, error))
            if verdict == REFUSE:
                self._refuse(f"the API refused the run: {judge.refusal}")
            return False
        released = verdict == RELEASE and self._release_held()
        return self._failed(a, error) or released

    def _release_held(self) -> bool:
        """The held rows fail with their own errors (the API answers others)."""
        held, self.held = self.held, []
        return any([self._failed(a, error) for a, error in held])

    def _settle_held(self) -> None:
        """At the shard's end, rows still held: the judge refuses the run, or they fail. When
        the run is stopping (Ctrl+C), they stay pending for the next run to judge."""
        if self.held and not self.refused and not self.process.stop.is_set():
            refusal = self.process.judge.shard_ended()
            if refusal:
                self._refuse(f"the API refused the run: {refusal}")
            else:
                self._release_held()

    def _refuse(self, reason: str) -> None:
        """Tell the coordinator at once, and stop sending: the run stops with exit 4."""
        if not self.refused:
            self.refused = reason
            self.process.events.put(replace(self._take_event(), refused=reason))
            self.process.stop.set()

    def _failed(self, a: Attempt, error: CallError) -> bool:
        outcome = new_outcome(a.row, self.columns, schema.FAILED, error.http_status, a.attempts)
        outcome[schema.ERROR_KIND] = error.kind.value
        outcome[schema.ERROR] = error.message
        self._finish(outcome)
        return self._answer_followers(a.row, outcome, final=isinstance(error, PermanentError))

    def _settled_by_copy(self, row: Row) -> bool:
        """True when the row needs no request of its own: its body's answer is known (copied
        now), in flight in this shard (the row follows it), or owned by a row of an earlier
        shard (the row is parked until its answer is stored)."""
        key = row.get(KEY)
        if key is None or self.twins is None:
            return False
        claim, known = self.twins.claim(row, key)
        if claim == COPY:
            assert known is not None
            self._finish(self._copy(row, known))
            return True
        return claim == WAIT

    def _answer_followers(self, row: Row, outcome: Row, *, final: bool) -> bool:
        """A sender's outcome: copy it to the rows waiting on the same body, or, when it is
        not final, let them try for themselves (True: new work)."""
        key = row.get(KEY)
        if key is None or self.twins is None:
            return False
        answer, waiting = self.twins.settle(row, key, outcome, final=final)
        if answer is None:
            self.ready.extend((r, 0) for r in waiting)
            return bool(waiting)
        for follower in waiting:
            self._finish(self._copy(follower, answer))
        return False

    def _copy(self, row: Row, answer: Row, *, deduped: bool = True) -> Row:
        if deduped:
            self.tally.copied()
        return copied_outcome(row, self.columns, answer)

    def _finish(self, outcome: Row) -> None:
        self.outcomes[outcome[schema.ROW]] = outcome
        self.batch.add(outcome)
        self.tally.finished(outcome[schema.STATUS])

    def _take_event(self, state: str | None = None) -> WorkerEvent:
        """What happened since the last event (under the lock, or after the lanes ended)."""
        if state is None:
            state = shard_state(
                ready=len(self.ready),
                in_flight=self.in_pool,
                scheduled=len(self.retries),
                paused=self.process.limiter.paused_for() > 0,
            )
        return self.tally.take_event(state, len(self.outcomes))

    def _conclude(self, rows: list[Row]) -> ShardReport:
        name, tally = self.task.name, self.tally
        if len(self.outcomes) < len(rows):  # stopped midway: the checkpoint keeps what is done
            self.process.events.put(self._take_event())
            return ShardReport(name, False, requests=tally.this_run_requests, refused=self.refused)
        ordered = [self.outcomes[row[schema.ROW]] for row in rows]
        write_result(self.process, name, ordered)
        self.process.events.put(self._take_event(DONE))
        counts = Counter(row[schema.STATUS] for row in ordered)
        requests, rows_requested = tally.this_run_requests, tally.this_run_rows
        return ShardReport(name, True, dict(counts), requests, rows_requested, tally.recovered)
