"""Progress of a run: workers send small count events, the coordinator renders them.

`Progress` is the interface. `LogProgress` writes plain lines at most every `interval` seconds
(`Progress: 1200/200000 users processed (0.6%) ...`); `NullProgress` shows nothing. The live
`rich` view implements the same interface. Time comes in through the constructor.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Protocol

from pipeline import schema


class Progress(Protocol):
    def start(self, total: int, done: int) -> None:
        """`total` rows in the run, `done` of them finished before this session."""

    def advance(self, counts: Mapping[str, int]) -> None:
        """Rows that just reached a final state, by state."""

    def tick(self) -> None:
        """Called a few times a second; render if it is time."""

    def finish(self) -> None: ...


class NullProgress:
    def start(self, total: int, done: int) -> None:
        pass

    def advance(self, counts: Mapping[str, int]) -> None:
        pass

    def tick(self) -> None:
        pass

    def finish(self) -> None:
        pass


class RateWindow:
    """Users/s over the last `span` seconds, from (time, done) samples."""

    def __init__(self, span: float = 30.0) -> None:
        self.span = span
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> None:
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.span:
            self._samples.popleft()

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0


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
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.done_before = 0
        self.window = RateWindow()
        self._started = 0.0
        self._last_line = 0.0

    @property
    def done(self) -> int:
        return self.done_before + sum(self.counts.values())

    def start(self, total: int, done: int) -> None:
        self.total, self.done_before = total, done
        self._started = self._last_line = self.clock()
        self.window.add(self._started, done)

    def advance(self, counts: Mapping[str, int]) -> None:
        self.counts.update(counts)

    def tick(self) -> None:
        now = self.clock()
        self.window.add(now, self.done)
        if now - self._last_line >= self.interval:
            self._last_line = now
            self.logger.info(self.line(now))

    def finish(self) -> None:
        now = self.clock()
        self.window.add(now, self.done)
        self.logger.info(self.line(now))

    def line(self, now: float) -> str:
        percent = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.window.rate()
        remaining = self.total - self.done
        eta = format_duration(remaining / rate) if rate > 0 and remaining > 0 else "-"
        states = ", ".join(f"{s} {self.counts[s]}" for s in schema.STATES if self.counts[s])
        return (
            f"Progress: {self.done}/{self.total} users processed ({percent:.1f}%)"
            f" - {rate:.1f} users/s - elapsed {format_duration(now - self._started)}"
            f" - ETA {eta}" + (f" - {states}" if states else "")
        )


def format_duration(seconds: float) -> str:
    """`1h02m03s`, `2m03s` or `3.2s`."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
