"""Progress of a run: workers send small events, the coordinator aggregates and renders them.

Workers put a `WorkerEvent` on the events queue about twice a second; the coordinator feeds
each one to `Progress.event`, and calls `Progress.tick` a few times a second with a
`RunSnapshot` of the run-wide facts only it knows (in-flight requests, the rate in force, a
pause). `RunStats` adds it all up; the renderers read it:

- `LogProgress`: plain lines at most every `interval` seconds
  (`Progress: 1200/200000 users processed (0.6%) ...`), for logs and non-terminals;
- `NullProgress`: nothing (tests);
- the live `rich` view implements the same interface.

Time comes in through the constructor (`clock`), so tests drive it without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from pipeline import schema


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
    counts: Mapping[str, int] = field(default_factory=dict)
    """Rows that reached a final state, by state."""
    requests: int = 0
    retries: int = 0
    deduped: int = 0
    """Rows answered by copying another row's answer (identical request body)."""
    errors: Mapping[str, int] = field(default_factory=dict)
    """Error answers by kind: http_429, http_5xx, http_4xx, timeout, connection, bad_body."""
    latencies_ms: tuple[float, ...] = ()
    """Latency of each answer received."""


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


class Progress(Protocol):
    def start(self, total: int, done: int) -> None:
        """`total` rows in the run, `done` of them finished before this session."""

    def event(self, event: WorkerEvent) -> None: ...

    def tick(self, snapshot: RunSnapshot) -> None:
        """Called a few times a second; render if it is time."""

    def finish(self) -> None: ...


class RateWindow:
    """A rate over the last `span` seconds, from (time, running total) samples."""

    def __init__(self, span: float = 30.0) -> None:
        self.span = span
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, total: int) -> None:
        self._samples.append((now, total))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.span:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0


class RunStats:
    """Running totals of a session, from worker events."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.total = 0
        self.done_before = 0
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.requests = 0
        self.retries = 0
        self.deduped = 0
        self.latencies: deque[float] = deque(maxlen=2000)
        self.workers: dict[int, WorkerEvent] = {}
        self.users = RateWindow()
        self.started = clock()
        self.snapshot = RunSnapshot()

    def start(self, total: int, done: int) -> None:
        self.total, self.done_before = total, done
        self.started = self.clock()
        self.users.add(self.started, done)

    @property
    def done(self) -> int:
        return self.done_before + sum(self.counts.values())

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def add(self, event: WorkerEvent) -> None:
        self.counts.update(event.counts)
        self.errors.update(event.errors)
        self.requests += event.requests
        self.retries += event.retries
        self.deduped += event.deduped
        self.latencies.extend(event.latencies_ms)
        self.workers[event.pid] = event

    def sample(self, snapshot: RunSnapshot | None = None) -> None:
        self.users.add(self.clock(), self.done)
        if snapshot is not None:
            self.snapshot = snapshot

    def eta(self) -> float | None:
        """Seconds to go at the recent rate; None when unknown."""
        rate = self.users.rate()
        remaining = self.total - self.done
        return remaining / rate if rate > 0 and remaining > 0 else None


class NullProgress:
    def start(self, total: int, done: int) -> None:
        pass

    def event(self, event: WorkerEvent) -> None:
        pass

    def tick(self, snapshot: RunSnapshot) -> None:
        pass

    def finish(self) -> None:
        pass


class LogProgress:
    """Plain log lines, at most one every `interval` seconds, and one at the end."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.stats = RunStats(clock)
        self._last_line = 0.0

    def start(self, total: int, done: int) -> None:
        self.stats.start(total, done)
        self._last_line = self.clock()

    def event(self, event: WorkerEvent) -> None:
        self.stats.add(event)

    def tick(self, snapshot: RunSnapshot) -> None:
        self.stats.sample(snapshot)
        now = self.clock()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self.logger.info(self.line())

    def finish(self) -> None:
        self.stats.sample()
        self.logger.info(self.line())

    def line(self) -> str:
        s = self.stats
        percent = 100.0 * s.done / s.total if s.total else 100.0
        eta = s.eta()
        states = ", ".join(f"{k} {s.counts[k]}" for k in schema.STATES if s.counts[k])
        text = (
            f"Progress: {s.done}/{s.total} users processed ({percent:.1f}%)"
            f" - {s.users.rate():.1f} users/s - elapsed {format_duration(s.elapsed)}"
            f" - ETA {format_duration(eta) if eta is not None else '-'}"
        )
        if states:
            text += f" - {states}"
        if s.snapshot.paused_for > 0:
            text += f" - paused ({s.snapshot.pause_reason}) for {format_duration(s.snapshot.paused_for)}"
        return text


def format_duration(seconds: float) -> str:
    """`1h02m03s`, `2m03s` or `3.2s`."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
