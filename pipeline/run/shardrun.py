"""One shard in one worker process: its lanes, its housekeeping, its result shard.

The shard runs on up to `share` lanes: a lane is a loop on one of the process's request
threads that takes a row, asks the shared limiter, makes the call, builds the row's outcome,
then records it and takes the next row in one hold of the shard's lock (`cond`). The call,
the JSON and the derived columns stay outside the lock. A thread stays on its lane from row
to row: a hand-off per request costs more CPU than the bookkeeping (BENCHMARKS.md).

The decisions are small parts, each guarded by `cond`: what is settled and what follows
(ledger.py: twins, checkpoint batches, events, the answer store's rows when the shard starts),
the retry schedule (schedule.py), the rows held while the API may refuse the run (held.py).
A transient failure puts the row on the schedule for its backoff instead of holding a thread
asleep; a 429 goes to the shared limiter, which pauses the whole run only as throttle.py's
rule says (another status's `Retry-After` pauses it).

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
from pipeline.errors import CredentialsRefused, PermanentError
from pipeline.run.attempt import Attempt, make_attempt
from pipeline.run.held import Held, HeldRows
from pipeline.run.ledger import ShardLedger
from pipeline.run.outcomes import new_outcome
from pipeline.run.process import WorkerProcess
from pipeline.run.schedule import RetrySchedule
from pipeline.run.shardfiles import Saver, parked_answers, read_shard, stored_answers, write_result
from pipeline.run.tally import DONE, ShardTally, shard_state
from pipeline.run.tasks import ShardReport, ShardTask
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
        self.cond = threading.Condition(threading.Lock())
        # Under `cond`: the work, the outcomes, what is not yet saved or reported.
        self.ready: deque[tuple[Row, int]] = deque()
        self.retries = RetrySchedule(clock)
        self.in_pool = 0
        """Rows taken by a lane and not yet recorded."""
        self.failed_before: set[int] = set()
        """Rows (their numbers) that have failed in this run: no longer fresh (breaker.py)."""
        self.lanes = 0
        self.target = 0
        """Lanes wanted: the process's share of the in-flight slots (set by the shard's thread)."""
        self.tally = ShardTally(task.name, clock=clock)
        self.ledger = ShardLedger.for_shard(process, task, self.tally, clock)
        self.held = HeldRows(process.judge, retry_failed=task.retry_failed)
        self.lane_error: BaseException | None = None
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
            self.saver.save(*self.ledger.take_unsaved())
            self.saver.close()
        return self._conclude(rows)

    def _load(self) -> list[Row]:
        """The shard's rows; those without an outcome yet are queued (or settled, if invalid
        or answered in the store)."""
        ledger = self.ledger
        rows, ledger.outcomes = read_shard(self.process, self.task.name, self.task.retry_failed)
        self.tally.shard_rows = len(rows)
        todo = [row for row in rows if row[schema.ROW] not in ledger.outcomes]
        self.tally.this_run_rows += len(todo)
        found = stored_answers(self.process, todo)
        for row in todo:
            if row[schema.INVALID] is not None:
                error = row[schema.INVALID]
                ledger.finish(new_outcome(row, ledger.columns, schema.INVALID_STATE, error=error))
            elif not ledger.from_store(row, found):
                self.ready.append((row, 0))
        return rows

    # The shard's own thread.

    def _loop(self) -> None:
        process, ledger, twins = self.process, self.ledger, self.ledger.twins
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
                saved = ledger.take_unsaved() if ledger.batch.due(now) else None
                event = self._take_event() if self.tally.timer.due(now) else None
            if saved is not None:
                self.saver.save(*saved)
            if event is not None:
                process.events.put(event)
            if keys:
                self._check_parked(keys)

    def _check_parked(self, keys: list[int]) -> None:
        """Settle parked rows whose answer has come (or whose owner will not send)."""
        twins = self.ledger.twins
        assert twins is not None
        found = parked_answers(self.process, self.task.name, keys, self.ledger.outcomes)
        if found:
            with self.cond:
                self._send_again(twins.unpark(found))
                self.cond.notify_all()

    def _stop_lanes(self) -> None:
        """Wait for the lanes to end (they end on `stop`, or when the work is done)."""
        with self.cond:
            self.target = 0
            self.cond.notify_all()
            while self.lanes:
                self.cond.wait(HOUSEKEEPING_SECONDS)

    # The lanes, on the request threads.

    def _lane(self) -> None:
        try:
            with self.cond:
                work = self._next()
            while work is not None:
                row, attempts, fresh = work
                attempt = make_attempt(
                    self.process, row, attempts, self.ledger.columns, fresh=fresh
                )
                with self.cond:  # once per request: record this one, take the next
                    self.in_pool -= 1
                    if self._handle(attempt) or self.in_pool == 0:
                        self.cond.notify_all()  # new work, a retry to wait for, or all done
                    elif self.ledger.batch.just_filled:
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

    def _next(self) -> tuple[Row, int, bool] | None:
        """The next row for a lane (under the lock), with its attempts so far and whether it
        is fresh (has not failed yet in this run); None when the lane should end."""
        stop, ready, retries = self.process.stop, self.ready, self.retries
        while self.lanes <= self.target and not stop.is_set():
            if retries:
                ready.extend(retries.pop_due())
            while ready:
                row, attempts = ready.popleft()
                if attempts == 0 and self.ledger.by_copy(row):
                    continue
                self.in_pool += 1
                return row, attempts, row[schema.ROW] not in self.failed_before
            if not self._work_left():
                return None
            self.cond.wait(retries.wait_time(EVENT_SECONDS))
        return None

    def _work_left(self) -> bool:
        return bool(self.ready or self.retries or self.in_pool)

    def _send_again(self, rows: list[Row]) -> bool:
        """Queue rows for a first attempt of their own; True when there were any."""
        self.ready.extend((row, 0) for row in rows)
        return bool(rows)

    def _handle(self, a: Attempt) -> bool:
        """Record an attempt (under the lock); True when it added work for the lanes."""
        if a.stopped:
            return False
        self.tally.request(fresh=a.fresh)
        if a.outcome is not None:
            self.ledger.answered(a)
            return self._fail(self.held.answered())
        error = a.error
        assert error is not None
        self.tally.error(error.kind.value, fresh=a.fresh)
        self.failed_before.add(a.row[schema.ROW])
        policy, limiter = self.process.settings.policy, self.process.limiter
        if isinstance(error, CredentialsRefused):
            self._refuse(f"the API refused the credentials: {error.message}")
            return False  # the row stays pending: it is not its fault
        if isinstance(error, PermanentError):
            failing, refusal = self.held.permanent(a, error)
            if refusal:
                self._refuse(refusal)
            return self._fail(failing)
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
            return self._fail([(a, error)])
        self.tally.retry()
        delay = policy.wait_after(a.attempts, error.retry_after, self.process.rng)
        if error.retry_after is not None and error.http_status != 429:
            limiter.pause_for(delay)
        self.retries.add(a.row, a.attempts, delay)
        return True

    def _fail(self, failing: list[Held]) -> bool:
        """These rows end failed with their errors; True when twins of theirs are to send."""
        again = [row for a, error in failing for row in self.ledger.failed(a, error)]
        return self._send_again(again)

    def _settle_held(self) -> None:
        """At the shard's end, rows still held: the judge refuses the run, or they fail."""
        failing, refusal = self.held.at_end(stopping=self.process.stop.is_set())
        if refusal:
            self._refuse(refusal)
        self._fail(failing)

    def _refuse(self, reason: str) -> None:
        """Tell the coordinator at once, and stop sending: the run stops with exit 4."""
        if self.held.refuse(reason):
            self.process.events.put(replace(self._take_event(), refused=reason))
            self.process.stop.set()

    def _take_event(self, state: str | None = None) -> WorkerEvent:
        """What happened since the last event (under the lock, or after the lanes ended)."""
        if state is None:
            state = shard_state(
                ready=len(self.ready),
                in_flight=self.in_pool,
                scheduled=len(self.retries),
                paused=self.process.limiter.paused_for() > 0,
            )
        return self.tally.take_event(state, len(self.ledger.outcomes))

    def _conclude(self, rows: list[Row]) -> ShardReport:
        name, tally, outcomes = self.task.name, self.tally, self.ledger.outcomes
        refused = self.held.refused
        if len(outcomes) < len(rows):  # stopped midway: the checkpoint keeps what is done
            self.process.events.put(self._take_event())
            return ShardReport(name, False, requests=tally.this_run_requests, refused=refused)
        ordered = [outcomes[row[schema.ROW]] for row in rows]
        write_result(self.process, name, ordered)
        self.process.events.put(self._take_event(DONE))
        counts = Counter(row[schema.STATUS] for row in ordered)
        requests, rows_requested = tally.this_run_requests, tally.this_run_rows
        return ShardReport(name, True, dict(counts), requests, rows_requested, tally.recovered)
