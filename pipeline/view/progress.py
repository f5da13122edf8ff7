"""Progress of a run: workers send small events, the coordinator aggregates and renders them.

Workers put a `WorkerEvent` on the events queue about twice a second; the coordinator feeds
each one to `Progress.event`, and calls `Progress.tick` a few times a second with a
`RunSnapshot` of the run-wide facts only it knows (in-flight requests, the rate in force, a
pause). `RunStats` adds it all up; the renderers read it:

- `LogProgress`: plain lines at most every `interval` seconds
  (`Progress: 1200/200000 users processed (0.6%) ...`), for logs and non-terminals;
- `NullProgress`: nothing (tests);
- `liveview.LiveProgress`: the live `rich` view, same interface.

Memory stays bounded however many rows a run has: rates come from short windows of samples,
the recent latencies are a fixed-size deque, and this invocation's latency percentiles come from
a `LatencyHistogram` of log-spaced buckets.

Time comes in through the constructor (`clock`), so tests drive it without sleeping.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pipeline.errors import ErrorKind

EVENT_SECONDS = 0.5
"""How often a shard sends the coordinator a `WorkerEvent`."""
ERROR_KINDS = tuple(kind.value for kind in ErrorKind)
"""The kinds of failed calls (errors.ErrorKind), in the order views list them."""


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
    held: bool = False
    """Paused by the operator (`pipeline control pause`) until `resume`."""
    notes: tuple[str, ...] = ()
    """The operator's latest changes to the run, each with its time, oldest first."""


class Progress(Protocol):
    def start(self, total: int, done: int) -> None:
        """`total` rows in the run, `done` of them finished before this invocation."""

    def event(self, event: WorkerEvent) -> None: ...

    def tick(self, snapshot: RunSnapshot) -> None:
        """Called a few times a second; render if it is time."""

    def finish(self) -> None: ...


class RateWindow:
    """A rate over the last `span` seconds, from (time, running total) samples."""

    def __init__(self, span: float = 30.0) -> None:
        self.span = span
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, total: int) -> None:
        self.samples.append((now, total))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.span:
            self.samples.popleft()

    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q` quantile (0 < q <= 1) of ascending `ordered`; None when empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


class LatencyHistogram:
    """Every latency of an invocation in log-spaced buckets: bounded memory, percentiles to ±0.05%.

    Bucket `i` holds [STEP**i, STEP**(i+1)) ms and the sum of its values; a percentile
    reports the mean of its bucket, so equal latencies come back exactly. An invocation of any
    length fills at most a few thousand buckets. Mean, min and max are exact.
    """

    STEP = 1.001
    _FLOOR_MS = 0.001  # 1 µs: a 0 ms answer (an instant mock) goes in the lowest bucket

    def __init__(self) -> None:
        self.counts: Counter[int] = Counter()
        self.sums: dict[int, float] = {}
        self.count = 0
        self.sum_ms = 0.0
        self.low = math.inf
        self.high = 0.0
        self._log_step = math.log(self.STEP)

    def add(self, values_ms: Iterable[float]) -> None:
        for ms in values_ms:
            index = math.floor(math.log(max(ms, self._FLOOR_MS)) / self._log_step)
            self.counts[index] += 1
            self.sums[index] = self.sums.get(index, 0.0) + ms
            self.count += 1
            self.sum_ms += ms
            self.low = min(self.low, ms)
            self.high = max(self.high, ms)

    def mean(self) -> float | None:
        return self.sum_ms / self.count if self.count else None

    def percentile(self, q: float) -> float | None:
        """Nearest-rank `q` quantile (0 < q <= 1) in ms; None before any latency."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return self.sums[index] / self.counts[index]
        return self.high  # pragma: no cover - the buckets always add up to count


class RunStats:
    """Running totals of one invocation, from worker events and the coordinator's snapshots."""

    RECENT_LATENCIES = 2000
    """How many of the latest latencies the live percentiles are computed over."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.total = 0
        self.done_before = 0
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        """Error answers by kind (see `ERROR_KINDS`)."""
        self.requests = 0
        self.retries = 0
        self.deduped = 0
        self.latencies: deque[float] = deque(maxlen=self.RECENT_LATENCIES)
        """The most recent latencies, ms."""
        self.latency = LatencyHistogram()
        """Every latency of this invocation."""
        self.workers: dict[int, WorkerEvent] = {}
        """The latest event of each worker process."""
        self.users = RateWindow()
        """Users/s over 30 s: the log line's rate and the ETA."""
        self.users_now = RateWindow(span=5.0)
        self.request_rate = RateWindow(span=5.0)
        self.started = clock()
        self.ended: float | None = None
        self.snapshot = RunSnapshot()

    def start(self, total: int, done: int) -> None:
        self.total, self.done_before = total, done
        self.started = self.clock()
        self.ended = None
        self.users.add(self.started, done)
        self.users_now.add(self.started, done)
        self.request_rate.add(self.started, 0)

    def end(self) -> None:
        """Stop this invocation's clock: `elapsed` and the averages stay as they are now."""
        if self.ended is None:
            self.sample()
            self.ended = self.clock()

    @property
    def done(self) -> int:
        return self.done_before + self.invocation_done

    @property
    def invocation_done(self) -> int:
        """Rows that reached a final state in this invocation."""
        return sum(self.counts.values())

    @property
    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else self.clock()) - self.started

    def add(self, event: WorkerEvent) -> None:
        self.counts.update(event.counts)
        self.errors.update(event.errors)
        self.requests += event.requests
        self.retries += event.retries
        self.deduped += event.deduped
        self.latencies.extend(event.latencies_ms)
        self.latency.add(event.latencies_ms)
        self.workers[event.pid] = event

    def sample(self, snapshot: RunSnapshot | None = None) -> None:
        now = self.clock()
        self.users.add(now, self.done)
        self.users_now.add(now, self.done)
        self.request_rate.add(now, self.requests)
        if snapshot is not None:
            self.snapshot = snapshot

    def eta(self) -> float | None:
        """Seconds to go at the recent rate; None when unknown."""
        rate = self.users.rate()
        remaining = self.total - self.done
        return remaining / rate if rate > 0 and remaining > 0 else None

    def average_rate(self) -> float:
        """Users/s over the whole invocation; 0 before any time has passed."""
        elapsed = self.elapsed
        return self.invocation_done / elapsed if elapsed > 0 else 0.0

    def recent_percentiles(
        self, quantiles: Sequence[float] = (0.5, 0.95, 0.99)
    ) -> list[float | None]:
        """Latency quantiles (ms) over the recent window; Nones before any latency."""
        ordered = sorted(self.latencies)  # at most RECENT_LATENCIES values
        return [percentile(ordered, q) for q in quantiles]


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
        self.stats.end()
        self.logger.info(self.line())

    def line(self) -> str:
        # Imported here: facts.py builds on this module (the same line is drawn by `watch`).
        from pipeline.view.facts import facts_of, progress_line

        return progress_line(facts_of(self.stats))


def format_duration(seconds: float) -> str:
    """`1h02m03s`, `2m03s` or `3.2s`."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
