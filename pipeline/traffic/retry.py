"""Retry policy: how many attempts a row gets and how long to wait between them.

A small frozen object of plain data with pure methods (after urllib3's `Retry`): the caller
does the waiting, so tests need no clock and no sleep. Which failures are retried is the
answer's classification (api/classify.py).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    """Attempts per row, the first included."""
    backoff_initial: float = 0.5
    """Seconds: the ceiling of the first wait; doubled each retry."""
    backoff_max: float = 60.0
    """Seconds: the ceiling of any wait."""
    retry_after_max: float = 300.0
    """Seconds: the longest Retry-After honoured; a longer one is an outage."""

    def should_retry(self, attempts_made: int) -> bool:
        return attempts_made < self.max_attempts

    def backoff(self, attempts_made: int, rng: random.Random) -> float:
        """Seconds to wait after `attempts_made` failed attempts: exponential with full
        jitter, uniform in [0, min(backoff_max, backoff_initial * 2 ** (attempts_made - 1))]."""
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** max(0, attempts_made - 1))
        return rng.uniform(0.0, ceiling)

    def wait_after(
        self, attempts_made: int, retry_after: float | None, rng: random.Random
    ) -> float:
        """The wait before the next attempt: the server's Retry-After when it gave one
        (capped at retry_after_max), else the jittered backoff."""
        if retry_after is not None:
            return min(retry_after, self.retry_after_max)
        return self.backoff(attempts_made, rng)
