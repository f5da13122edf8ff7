"""Retry policy: which answers are retried, how long to wait, and `Retry-After`.

A small frozen object of plain data with pure methods (after urllib3's `Retry`): the caller
does the waiting, so tests need no clock and no sleep.

Classification (CONTRACT.md): timeouts, connection errors, 408, 429, 5xx and an unusable 200
body are transient and retried; 401 means "refresh the token"; any other 4xx is permanent.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

TRANSIENT = "transient"
PERMANENT = "permanent"
AUTH = "auth"
SUCCESS = "success"


def classify_status(status: int) -> str:
    """What an HTTP status means for the call: success, transient, permanent or auth."""
    if 200 <= status < 300:
        return SUCCESS
    if status == 401:
        return AUTH
    if status in (408, 429) or status >= 500:
        return TRANSIENT
    return PERMANENT


def error_kind(http_status: int | None, message: str) -> str:
    """A short, stable name for a failed call: http_429, http_5xx, http_4xx, timeout,
    connection, bad_body (the names `status` and the live view group errors by)."""
    if message.startswith("timeout"):
        return "timeout"
    if message.startswith("connection error"):
        return "connection"
    if message.startswith("bad body"):
        return "bad_body"
    if http_status == 429:
        return "http_429"
    if http_status is not None and http_status >= 500:
        return "http_5xx"
    if http_status is not None:
        return "http_4xx"
    return "other"


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


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date.

    None when absent or unreadable; never negative. `now` (UTC) is injectable for tests.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())
