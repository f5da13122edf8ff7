"""What workers tell the coordinator, and what a progress view is.

Workers put a `WorkerEvent` on the events queue every `EVENT_SECONDS`; the coordinator feeds
each one to `Progress.event`, and calls `Progress.tick` a few times a second with a
`RunSnapshot` of the run-wide facts only it knows (in-flight requests, the rate in force, a
pause). Plain, picklable data.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.errors import ErrorKind

EVENT_SECONDS = 0.5
"""How often a shard sends the coordinator a `WorkerEvent`."""

ERROR_KINDS = tuple(kind.value for kind in ErrorKind)
"""The kinds of failed calls (errors.ErrorKind), in the order views list them."""


@dataclass
class Counts:
    """What rows and requests came to: one worker's since its previous event
    (`WorkerEvent.figures`), or the whole invocation's (`RunStats.figures`). One type for
    both, so that a figure is added in one place and summed the same way everywhere."""

    states: Counter[str] = field(default_factory=Counter)
    """Rows that reached a final state, by state."""
    errors: Counter[str] = field(default_factory=Counter)
    """Error answers by kind: http_429, http_5xx, http_4xx, timeout, connection, bad_body."""
    requests: int = 0
    retries: int = 0
    deduped: int = 0
    """Rows answered by copying another row's answer (identical request body)."""
    reused: int = 0
    """Rows answered from the answer store kept across runs."""
    saved: int = 0
    """Requests that store saved (a twin's reuse counts as deduped, not saved)."""
    oldest_answer_at: float | None = None
    """When the oldest answer reused was fetched (Unix seconds); None: none reused."""
    fresh_requests: int = 0
    """Requests for rows that had not failed yet in this run. The pacer reads overload from
    these alone: a user the API always fails is no sign that it struggles."""
    fresh_overloads: int = 0
    """5xx answers and timeouts among them."""

    def add(self, other: Counts) -> None:
        self.states.update(other.states)
        self.errors.update(other.errors)
        self.requests += other.requests
        self.retries += other.retries
        self.deduped += other.deduped
        self.reused += other.reused
        self.saved += other.saved
        self.fresh_requests += other.fresh_requests
        self.fresh_overloads += other.fresh_overloads
        self.reused_at(other.oldest_answer_at)

    def reused_at(self, answered_at: float | None) -> None:
        """An answer reused was fetched at `answered_at` (None: no answer)."""
        old = self.oldest_answer_at
        if answered_at is not None and (old is None or answered_at < old):
            self.oldest_answer_at = answered_at

    def done(self) -> int:
        """Rows that reached a final state."""
        return sum(self.states.values())


@dataclass(frozen=True)
class WorkerEvent:
    """What one worker process did since its previous event (counts are deltas)."""

    pid: int
    shard: str
    state: str
    """"working", "backing off", "paused" or "done"."""
    shard_rows_done: int
    """Rows of the shard with an outcome so far (a total, not a delta)."""
    shard_rows: int
    figures: Counts = field(default_factory=Counts)
    """What happened since the previous event."""
    latencies_ms: tuple[float, ...] = ()
    """Latency of each answer received."""
    refused: str = ""
    """Why the API refuses the run (credentials, one error for everything); "" = it does not.
    The coordinator stops the run on the first event that says so (exit 4)."""


@dataclass(frozen=True)
class RunSnapshot:
    """Run-wide facts the coordinator reads from the shared limits."""

    in_flight: int = 0
    max_workers: int = 0
    rate_limit: float = 0.0
    """Configured requests/s; 0 = none."""
    current_rate: float = 0.0
    """Requests/s the adaptive control allows now; 0 = no limit in force."""
    paused_for: float = 0.0
    """Seconds left of a run-wide pause; 0 = not paused."""
    pause_reason: str = ""
    """"Retry-After" or "outage" while paused."""
    held: bool = False
    """Paused by the operator (`pipeline control pause`) until `resume`."""
    notes: tuple[str, ...] = ()
    """The operator's latest changes to the run, each with its time, oldest first."""
    window: str = ""
    """The partner window in force and the next change, as a line; "" without windows."""


class Progress(Protocol):
    def start(self, total: int, done: int) -> None:
        """`total` rows in the run, `done` of them finished before this invocation."""

    def event(self, event: WorkerEvent) -> None: ...

    def tick(self, snapshot: RunSnapshot) -> None:
        """Called a few times a second; render if it is time."""

    def finish(self) -> None: ...
