"""A run's figures as the views show them: `RunStats` adds up worker events and snapshots.

Memory stays bounded however many rows a run has: rates come from short windows of samples
(`RateWindow`), the recent latencies are a fixed-size deque, and the latency percentiles
come from a `LatencyHistogram` of log-spaced buckets. Time comes in through the constructor
(`clock`), so tests drive it without sleeping.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence

from pipeline.view.events import (
    Counts,
    RunSnapshot,
    WorkerEvent,
)


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
        self.figures = Counts()
        """What this invocation's rows and requests came to, added up from the events."""
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
        return self.figures.done()

    @property
    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else self.clock()) - self.started

    def add(self, event: WorkerEvent) -> None:
        self.figures.add(event.figures)
        self.latencies.extend(event.latencies_ms)
        self.latency.add(event.latencies_ms)
        self.workers[event.pid] = event

    def sample(self, snapshot: RunSnapshot | None = None) -> None:
        now = self.clock()
        self.users.add(now, self.done)
        self.users_now.add(now, self.done)
        self.request_rate.add(now, self.figures.requests)
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
