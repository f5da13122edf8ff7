"""Adaptive rate control (AIMD): as fast as the partner allows, and not one request faster.

`AimdController.update(feedback)` is called by the coordinator about once a second with what
the whole run saw since the previous call, and returns the rate the shared limiter should
hold (0 = no client-side limit). The algorithm:

1. Start at `[processing] rate_limit`, or unlimited when it is 0.
2. Trouble is a 429, a share of 503s / timeouts of at least `overload_share`, or, with every
   slot in flight, a median latency over `latency_factor` x the best median seen for
   `SLOW_UPDATES` updates in a row: the API is queueing us. On trouble (at most once per
   `cooldown`), decrease multiplicatively from what the API really served:
   `rate = served * factor`, with factor `throttle_decrease` for 429s (the partner said
   exactly where its limit is) and `overload_decrease` otherwise.
   When nothing was served there is no figure to go from, and the rate stays.
   The rate that was too fast is remembered as `too_fast`.
3. Without trouble, increase additively every update: `increase` x rate per second (at least
   `MIN_STEP`), and `CAUTION` times slower within 5% of `too_fast`, so the run rests just
   under the partner's limit instead of bouncing off it (every 429 also costs a Retry-After
   pause of the whole run). Clean well above `too_fast`, the limit has moved: climb freely.
4. Never above `rate_limit` when one is set. Unlimited runs stay unlimited until the first
   trouble. An operator's `pipeline control rate R` replaces that ceiling for the rest of
   the run (`set_ceiling`).

Pure: plain numbers in, a number out, time from the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MIN_RATE = 0.5  # requests/s; never slower, so the run always moves and can find its way back
MIN_STEP = 1.0  # requests/s added per clean second at the least, so a low rate recovers
SLOW_UPDATES = 3  # updates in a row with a slow median before latency counts as trouble
CAUTION = 40  # how much slower the climb is within 5% of the rate that was too fast


@dataclass(frozen=True)
class Feedback:
    now: float
    answered: int = 0
    """Answers received since the last update (any status)."""
    throttled: int = 0
    """429 answers."""
    overloaded: int = 0
    """5xx answers and timeouts."""
    served_rate: float = 0.0
    """Successful answers per second over the last few seconds: what the API really served."""
    median_ms: float | None = None
    saturated: bool = False
    """Every in-flight slot was busy."""


@dataclass(frozen=True)
class AimdPolicy:
    ceiling: float = 0.0
    """`[processing] rate_limit`; 0 = none."""
    throttle_decrease: float = 0.95
    overload_decrease: float = 0.7
    increase: float = 0.05
    """Fraction of the rate added per second while clean."""
    cooldown: float = 2.0
    overload_share: float = 0.2
    latency_factor: float = 2.0


class AimdController:
    def __init__(self, policy: AimdPolicy, now: float) -> None:
        self.policy = policy
        self.rate = policy.ceiling
        self.too_fast = 0.0
        self.best_median: float | None = None
        self.quiet_until = now
        self.last = now
        self.decreases = 0
        self.slow_updates = 0

    def set_ceiling(self, ceiling: float) -> None:
        """A new ceiling (0 = none), in force at once: the operator asked for that rate, so
        the climb starts there, not from below; trouble still brings it down."""
        self.policy = replace(self.policy, ceiling=ceiling)
        self.rate = ceiling

    def update(self, f: Feedback) -> float:
        p = self.policy
        trouble = self._trouble(f)
        if f.now < self.quiet_until:
            return self.rate
        elapsed, self.last = max(0.0, f.now - self.last), f.now
        if trouble is not None:
            served = f.served_rate if f.served_rate > 0 else self.rate
            base = min(served, self.rate) if self.rate > 0 else served
            if base <= 0:
                return self.rate  # nothing was served: no figure to decrease from
            self.too_fast = max(base, MIN_RATE)
            self.rate = max(MIN_RATE, base * trouble)
            self.quiet_until = self.last = f.now + p.cooldown
            self.decreases += 1
        elif self.rate > 0:
            step = max(self.rate * p.increase, MIN_STEP) * elapsed
            if self.too_fast * 0.95 <= self.rate <= self.too_fast * 1.05:
                step /= CAUTION
            elif self.rate > self.too_fast * 1.05:
                self.too_fast = 0.0  # clean well above it: the limit has moved, climb freely
            self.rate += step
            if p.ceiling > 0:
                self.rate = min(self.rate, p.ceiling)
        return self.rate

    def _trouble(self, f: Feedback) -> float | None:
        """The decrease factor when the feedback shows trouble, else None."""
        p = self.policy
        if f.throttled:
            return p.throttle_decrease
        if f.overloaded >= 3 and f.overloaded >= p.overload_share * max(f.answered, 1):
            return p.overload_decrease
        if f.median_ms is not None:
            if self.best_median is None or f.median_ms < self.best_median:
                self.best_median = f.median_ms
            best = self.best_median
            slow = f.saturated and best is not None and f.median_ms > p.latency_factor * best + 50
            # One slow second can be our own machine; three in a row are the API queueing us.
            self.slow_updates = self.slow_updates + 1 if slow else 0
            if self.slow_updates >= SLOW_UPDATES:
                self.slow_updates = 0
                return p.overload_decrease
        return None
