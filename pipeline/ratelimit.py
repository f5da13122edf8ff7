"""One rate limit and one in-flight cap for the whole run, shared by every process and thread.

The coordinator creates a `SharedLimits` (multiprocessing primitives) and hands it to each
worker process when the process starts; every request first calls `acquire()` and then
`release()`. Because the state is shared (not a per-process share), a process that is idle at
the end of a run leaves its budget to the others.

Rate: a virtual schedule (GCRA). A shared `next_slot` holds the earliest time the next request
may start; each acquire takes `max(now, next_slot)` and moves `next_slot` on by `1 / rate`. The
requests are spaced evenly, so no 1-second window ever holds more than `rate + 1` of them.
`time.monotonic` is one system-wide clock on Linux, so processes agree on it.

Pause: `pause_for(seconds)` (a `Retry-After`) holds every acquire in every process until then.
"""

from __future__ import annotations

import multiprocessing.context
import time
from collections.abc import Callable
from typing import Any


class SharedLimits:
    """Plain multiprocessing state; picklable while a process is being started."""

    def __init__(self, ctx: multiprocessing.context.BaseContext, rate: float, in_flight: int):
        self.rate = ctx.Value("d", rate, lock=False)
        self.next_slot = ctx.Value("d", 0.0, lock=False)
        self.paused_until = ctx.Value("d", 0.0, lock=False)
        self.lock = ctx.Lock()
        self.slots = ctx.BoundedSemaphore(in_flight)
        self.capacity = in_flight


class Limiter:
    """A process's handle on the shared limits. `acquire` blocks until a request may start
    (or `stop` is set: then it returns False); pair each True with one `release`."""

    def __init__(
        self,
        shared: SharedLimits,
        stop: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shared = shared
        self._stop = stop
        self._clock = clock

    def acquire(self) -> bool:
        shared = self._shared
        while not shared.slots.acquire(timeout=0.5):
            if self._stop.is_set():
                return False
        while True:
            start = self._reserve()
            delay = start - self._clock()
            if delay <= 0:
                return True
            if self._stop.wait(delay):
                shared.slots.release()
                return False
            if self._clock() >= shared.paused_until.value:
                return True

    def _reserve(self) -> float:
        """The time this request may start; moves the shared schedule on."""
        shared = self._shared
        with shared.lock:
            now = self._clock()
            start = max(now, shared.paused_until.value)
            rate = shared.rate.value
            if rate > 0:
                start = max(start, shared.next_slot.value)
                shared.next_slot.value = start + 1.0 / rate
            return float(start)

    def release(self) -> None:
        self._shared.slots.release()

    def rate(self) -> float:
        """Requests/s in force for the run; 0 = no limit."""
        return float(self._shared.rate.value)

    def paused_for(self) -> float:
        """Seconds left of a run-wide pause; 0 when not paused."""
        return max(0.0, float(self._shared.paused_until.value) - self._clock())

    def in_flight(self) -> int:
        """Requests holding a slot now, in all processes."""
        return self._shared.capacity - int(self._shared.slots.get_value())

    def pause_for(self, seconds: float) -> None:
        """Hold every request of the run for `seconds` from now (never shortens a pause)."""
        shared = self._shared
        with shared.lock:
            until = self._clock() + seconds
            if until > shared.paused_until.value:
                shared.paused_until.value = until
