"""The retry schedule: rows that failed transiently, each due again at its own time.

A failed row waits on the schedule for its backoff instead of holding a request thread
asleep; a lane takes it back when it is due. A heap, ordered by due time, then row number.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Any

from pipeline import schema

Row = dict[str, Any]


class RetrySchedule:
    """Rows waiting for their next attempt (not thread-safe: the shard's lock guards it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._heap: list[tuple[float, int, Row, int]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, row: Row, attempts: int, delay: float) -> None:
        """Schedule `row` (with `attempts` made so far) for `delay` seconds from now."""
        heapq.heappush(self._heap, (self.clock() + delay, row[schema.ROW], row, attempts))

    def pop_due(self) -> list[tuple[Row, int]]:
        """The rows due by now, earliest first, with their attempts so far."""
        heap = self._heap
        if not heap:
            return []
        now = self.clock()
        due = []
        while heap and heap[0][0] <= now:
            _, _, row, attempts = heapq.heappop(heap)
            due.append((row, attempts))
        return due

    def wait_time(self, longest: float) -> float:
        """Seconds until the next row is due, at most `longest` (and `longest` when none is)."""
        if not self._heap:
            return longest
        return max(0.0, min(longest, self._heap[0][0] - self.clock()))
