"""Progress of a run, rendered: plain log lines, or nothing.

The coordinator feeds worker events to a `Progress` (events.py) and ticks it with snapshots;
`RunStats` (stats.py) adds it all up, and the renderers read it:

- `LogProgress`: plain lines at most every `interval` seconds
  (`Progress: 1200/200000 users processed (0.6%) ...`), for logs and non-terminals;
- `NullProgress`: nothing (tests);
- `liveview.LiveProgress`: the live `rich` view, same interface.

The names of events.py and stats.py are importable from here too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pipeline.view.events import (
    ERROR_KINDS,
    EVENT_SECONDS,
    Counts,
    Progress,
    RunSnapshot,
    WorkerEvent,
)
from pipeline.view.stats import (
    LatencyHistogram,
    RateWindow,
    RunStats,
    percentile,
)


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


__all__ = [
    "ERROR_KINDS",
    "EVENT_SECONDS",
    "Counts",
    "LatencyHistogram",
    "LogProgress",
    "NullProgress",
    "Progress",
    "RateWindow",
    "RunSnapshot",
    "RunStats",
    "WorkerEvent",
    "format_duration",
    "percentile",
]
