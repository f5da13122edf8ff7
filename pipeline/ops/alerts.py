"""When a run deserves a message: progress steps, a stall, the API going away and back.

Small pure objects of plain numbers, time from the caller, tested without sleeping. The
run's operations (operations.py) feed them the run's figures every tick and sends what they return.
"""

from __future__ import annotations

import math


class Milestones:
    """Each `every_percent` of the rows done, once (100% is the `finished` message)."""

    def __init__(self, every_percent: float, done: int, total: int) -> None:
        self.step = every_percent
        self.next = self._after(done, total)

    def _after(self, done: int, total: int) -> float:
        if self.step <= 0 or total <= 0:
            return math.inf
        reached = 100.0 * done / total
        return (math.floor(reached / self.step + 1e-9) + 1) * self.step

    def reached(self, done: int, total: int) -> list[float]:
        """The steps crossed since the last call, in order (a big jump crosses several)."""
        crossed = []
        while self.next < 100.0 - 1e-9 and total > 0 and 100.0 * done / total >= self.next:
            crossed.append(self.next)
            self.next += self.step
        return crossed


STALLED = "stalled"
MOVING = "moving"


class StallWatch:
    """No row finished for `after` seconds while not paused: stalled (said once), until rows
    finish again. A pause (the operator's, a Retry-After) restarts the count."""

    def __init__(self, after: float, now: float) -> None:
        self.after = after
        self.since = now
        self.done = -1
        self.stalled = False

    def update(self, done: int, paused: bool, now: float) -> str | None:
        """STALLED when it has just stalled, MOVING when rows finish again after it, else None."""
        if done != self.done:
            self.done, self.since = done, now
            if self.stalled:
                self.stalled = False
                return MOVING
            return None
        if paused:
            self.since = now
            return None
        if self.after > 0 and not self.stalled and now - self.since >= self.after:
            self.stalled = True
            return STALLED
        return None


DOWN = "down"
UP = "up"


class OutageEdge:
    """The API unavailable (the breaker open) and back: each change once."""

    def __init__(self) -> None:
        self.down_since: float | None = None

    def update(self, outage: bool, now: float) -> tuple[str, float] | None:
        """(DOWN, 0) when it has just gone down, (UP, seconds it was down) when it is back."""
        if outage and self.down_since is None:
            self.down_since = now
            return DOWN, 0.0
        if not outage and self.down_since is not None:
            lasted, self.down_since = now - self.down_since, None
            return UP, lasted
        return None
