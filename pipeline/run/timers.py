"""`Every`: a periodic chore's timer, on an injected clock (no thread, no sleeping).

The shard's thread does its chores (checkpoint batches, progress events, the parked rows'
look-up) when each one's interval has passed; `Every` says when.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class Every:
    """Due once `seconds` have passed since it was last reset (or made, or at once when
    `at_once`)."""

    def __init__(
        self, seconds: float, clock: Callable[[], float] = time.monotonic, *, at_once: bool = False
    ) -> None:
        self.seconds = seconds
        self.clock = clock
        self.last = -math.inf if at_once else clock()

    def due(self, now: float) -> bool:
        return now - self.last >= self.seconds

    def reset(self, now: float | None = None) -> None:
        self.last = self.clock() if now is None else now
