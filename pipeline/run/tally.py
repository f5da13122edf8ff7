"""A shard's accounting: what to tell the coordinator, and what this invocation did.

Progress events carry deltas (what happened since the previous event), sent every
`EVENT_SECONDS`; the shard's report carries this invocation's totals (rows requested, their
final states, requests made), which a resumed or `rerun-failed` run reports on its own.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable

from pipeline import schema
from pipeline.errors import ErrorKind
from pipeline.run.timers import Every
from pipeline.view.progress import EVENT_SECONDS, Counts, WorkerEvent

WORKING, BACKING_OFF, PAUSED, DONE = "working", "backing off", "paused", "done"
OVERLOAD_KINDS = frozenset((ErrorKind.HTTP_5XX.value, ErrorKind.TIMEOUT.value))
"""Failures that can mean the API is struggling (the pacer slows down on many of them)."""


def shard_state(*, ready: int, in_flight: int, scheduled: int, paused: bool) -> str:
    """What the shard is doing, for the live view: paused (the run waits out a
    `Retry-After` or an outage), backing off (only retries are left, none due), or working."""
    if paused:
        return PAUSED
    if not ready and not in_flight and scheduled:
        return BACKING_OFF
    return WORKING


class ShardTally:
    """Counts for one shard's events and report (not thread-safe: the shard's lock guards it)."""

    def __init__(
        self, shard: str, shard_rows: int = 0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.shard = shard
        self.shard_rows = shard_rows
        self.delta = Counts()
        """What happened since the last event."""
        self.latencies: list[float] = []
        self.timer = Every(EVENT_SECONDS, clock)
        self.this_run_rows = 0
        """Rows this invocation set out to settle (not those done before a resume)."""
        self.this_run_requests = 0
        self.this_run_counts: Counter[str] = Counter()
        """This invocation's rows by final state."""

    def request(self, *, fresh: bool = True) -> None:
        """A request was made; `fresh`: for a row that had not failed yet in this run."""
        self.delta.requests += 1
        self.delta.fresh_requests += fresh
        self.this_run_requests += 1

    def error(self, kind: str, *, fresh: bool = True) -> None:
        """A request failed (`kind`: an ErrorKind's value; `fresh`: as for `request`)."""
        self.delta.errors[kind] += 1
        self.delta.fresh_overloads += fresh and kind in OVERLOAD_KINDS

    def retry(self) -> None:
        self.delta.retries += 1

    def answered(self, latency_ms: float) -> None:
        self.latencies.append(latency_ms)

    def copied(self) -> None:
        self.delta.deduped += 1

    def reused(self, answered_at: float, *, saved: bool) -> None:
        """A row answered from the answer store; `saved`: a request saved (not a twin's)."""
        self.delta.reused += 1
        self.delta.saved += saved
        self.delta.reused_at(answered_at)

    def finished(self, status: str) -> None:
        self.delta.states[status] += 1
        self.this_run_counts[status] += 1

    @property
    def recovered(self) -> int:
        """This invocation's rows that ended with an answer (ok or no_cards)."""
        return self.this_run_counts[schema.OK] + self.this_run_counts[schema.NO_CARDS]

    def take_event(self, state: str, rows_done: int) -> WorkerEvent:
        """The event for what happened since the last one; the next delta starts empty."""
        figures, self.delta = self.delta, Counts()
        latencies, self.latencies = self.latencies, []
        self.timer.reset()
        return WorkerEvent(
            pid=os.getpid(),
            shard=self.shard,
            state=state,
            shard_rows_done=rows_done,
            shard_rows=self.shard_rows,
            figures=figures,
            latencies_ms=tuple(latencies),
        )
