"""What the partner's 429s and quota headers do to the whole run (pure rules; limiter.py acts).

**Retry-After.** The refused row's own retry always waits at least the time given (retry.py).
The whole run is paused only when the partner means everyone:

- a `Retry-After` of at least `long_retry_after` (2 s): a spent quota or fixed window, for
  which nothing gets through until it resets (a 10-second window says up to 10); or
- the `many`-th 429 in a row, all processes together, without a success between them (4):
  the partner is refusing everything right now, e.g. a fixed window spent near its end.
  Such a window's `Retry-After` is rounded up to whole seconds (a 1-second window says "1"
  when 0.05 s are left), so the pause is short, `short_pause` (0.1 s), and doubles with each
  further such pause before a success, up to the `Retry-After` (or `no_header_pause`, 1 s,
  without one). 429s that come back during a pause were sent before it and change nothing.
  Measured on the fake clock (tests/test_pacing.py), pausing the whole `Retry-After` there
  cost a 1-second fixed window 30% of its rate; not pausing at all let a 10-second window
  answer 7% of the requests with 429.

Otherwise, and that is a token bucket's usual 1-second `Retry-After` among answers that get
through, nothing else stops: the bucket refills in 1/H s, and pausing 64 lanes for a second on
each 429 was what held a run to a third of the partner's limit. The pacer (adaptive.py) slows
the run to what the partner serves instead. A `Retry-After` longer than `[retry]
retry_after_max` is an outage (breaker.py).

**Quota headers** (`RateLimit-Limit`, `-Remaining`, `-Reset`, or the `X-RateLimit-*`
spellings, read by api/classify.py). The partner's window is taken as the
longest `Reset` seen (at least 1 s); the run never goes faster than `margin` x `Limit` /
window, and when `Remaining` is down to `reserve` (answers on their way can still take it),
new requests wait for the `Reset`. So a well-behaved partner sees no 429 at all.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.api.classify import Quota


@dataclass(frozen=True)
class ThrottlePolicy:
    long_retry_after: float = 2.0
    """Seconds: a Retry-After at least this long pauses the whole run."""
    many: int = 4
    """429s in a row (no success between) that pause the whole run."""
    short_pause: float = 0.1
    """Seconds of the first pause for many 429s in a row; doubled for each one after."""
    no_header_pause: float = 1.0
    """Seconds: the longest of those pauses when the partner gave no Retry-After."""

    def run_pause(self, retry_after: float | None, in_a_row: int, pauses: int = 0) -> float:
        """Seconds to pause every request of the run after a 429 (0 = none): `retry_after`
        as the answer gave it (None = absent), `in_a_row` counting this one, `pauses` the
        pauses for many 429s in a row since the last success."""
        if retry_after is not None and retry_after >= self.long_retry_after:
            return retry_after
        if in_a_row >= self.many:
            longest = self.no_header_pause if retry_after is None else retry_after
            return min(longest, self.short_pause * 2.0**pauses)
        return 0.0


@dataclass(frozen=True)
class QuotaPolicy:
    margin: float = 0.97
    """Share of Limit / window to hold: even spacing keeps every window under its limit."""
    reserve: int = 1
    """Remaining at or under which new requests wait for the Reset."""

    def window(self, known: float, quota: Quota) -> float:
        """The partner's window in seconds: the longest Reset seen, at least 1."""
        return max(known, quota.reset_s, 1.0)

    def cap(self, quota: Quota, window: float) -> float:
        """The fastest rate the quota allows, requests/s."""
        return self.margin * quota.limit / window

    def hold(self, quota: Quota) -> float:
        """Seconds that new requests wait (0 = none): until the Reset when little is left."""
        return quota.reset_s if quota.remaining <= self.reserve else 0.0
