"""Pacing: find the partner's limit in seconds, hold just under it, follow it when it moves.

`Pacer.update(feedback)` is called by the coordinator every tick (~0.2 s) with the run's
running totals of answers, successes and 429s (shared counters, seen at once), and about once
a second with the workers' overload and latency figures. It returns the rate the shared
limiter should hold (0 = no client-side limit).

1. **Start.** With `[processing] rate_limit` set, start there and never go above it. Without
   one, *slow start*: `START_RATE` requests/s, doubled every `RAMP_DOUBLING` seconds, but
   never more than `UNBOUND` x the answers (but 429s, failures included) of the last
   `RAMP_SPAN` seconds: a run held back by its latency or its in-flight cap does not build up
   a rate it could dump on the partner later, and the rate the first 429s meet is at most
   twice the partner's: it sees a few dozen 429s, not a flood. Quota headers are taken at
   their word at once; an operator's `pipeline control rate R` is the ceiling from then on.
   **Lift.** When the answers have come at one level (within `FLAT`, at least `LIFT_ABOVE`
   a second) for `FLAT_SECONDS` while the rate was held back by them, with no 429, no quota
   headers and no ceiling, the client (its CPU, its latency, its in-flight cap) is what holds
   the run back, not the partner: the rate is lifted (0), so requests do not queue for
   places in a schedule that holds nothing back (BENCHMARKS.md, "CPU per user"). A 429,
   quota headers, an overload, a ceiling, or answers `REBIND` x as fast bring a rate back.
2. **Cut to what was served.** On new 429s, the partner's limit is taken to be what it
   served (successes only) over the last `SERVED_SPAN` seconds, and the rate is set to `CUT`
   x that: just under the partner's real limit, whatever the overshoot was. That figure is
   remembered as `limit`. The shared limiter spaces the requests at the new rate at once
   (limiter.py), so the 429s of the old rate end with the answers on their way: for
   `COOLDOWN` after a cut further 429s are theirs. 429s that make `HEAVY` of the answers
   since a cut less than `SERVED_SPAN` ago mean it was not deep enough (the limit has just
   dropped, 80 -> 30; or a token bucket's spent burst had swelled what was served): the
   next cut goes from what the partner served since the last one, the rate it allows now.
   Fewer are a window still holding the overshoot before the cut (a sliding window refuses
   now and then for up to a second, and serves less meanwhile): the next cut goes from the
   last second's figure, as the first did.
3. **Climb fast when far, slowly when near, faster again the longer all is clean.** Without
   new 429s: below `(1 - NEAR)` x `limit` (after an overload cut, say) the rate closes
   `FAR_GAIN` of the gap per second; from there on it grows by `NEAR_GROWTH` of itself per
   second, and that growth rises by its own size every `ACCEL` seconds without a 429, so a
   limit that has not moved is touched again a second or two after a cut, with a 429 or
   two, and one that has risen is found within seconds. Once what is *served* (not the rate
   asked for, which a busy machine or a bucket's burst can make look clean) is `MOVED`
   above `limit`, the limit has gone up: slow start again from there, doubling every
   `REPROBE_DOUBLING` seconds at most (80 -> 30 -> 80 req/s: back over 64 within about 4 s
   of the rise).
4. **Overload**: at least 3 answers 5xx or timeouts making `overload_share` of the answers
   to rows that had not failed yet in this run, or a median latency over `latency_factor` x
   the best one seen for `SLOW_UPDATES` updates in a row with every slot busy, cuts the rate
   to `overload_decrease` x what was served (the API is struggling, not counting). A user
   the API fails every time, asked again, is no sign of that (BENCHMARKS.md, scenario 12).

Time is *active* time: without the run-wide pauses, not asked during a pause or an outage,
a gap over `MAX_STEP` counted as `MAX_STEP`; so neither the served rate nor the climb takes
a pause for a slow partner or a long stretch of calm.

Constants were set against the mock's gateway kinds (scripts/bench.py `gateways`, H = 60-80
req/s, 64 in flight, 2 processes). What a 429's `Retry-After` and the partner's RateLimit
headers do to the run is throttle.py's. Pure: numbers in, a number out, time from the caller.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

MIN_RATE = 0.5  # requests/s; never slower, so the run always moves and can find its way back
MIN_STEP = 1.0  # requests/s per second at the least when climbing back from far below
START_RATE = 20.0  # requests/s of a slow start
RAMP_DOUBLING = 0.25  # seconds per doubling of a slow start: 20 -> 640 req/s in 1.25 s
REPROBE_DOUBLING = 0.6  # seconds per doubling of a slow start again, past a limit that moved
UNBOUND = 2.0  # a slow start runs at most this many times ahead of what is served
RAMP_SPAN = 0.25  # seconds of answers that measure what a slow start may run ahead of
FLAT = 0.15  # answers within this share of one level: they have stopped growing
FLAT_SECONDS = 0.6  # for this long, with the rate held back by them: lift the rate
REBIND = 2.0  # answers this many times the level it was lifted at: slow start again
LIFT_ABOVE = 100.0  # requests/s; below it a schedule costs nothing worth saving
SERVED_SPAN = 1.0  # seconds of successes that measure the partner's limit
CUT = 0.97  # share of the served rate to hold after 429s
COOLDOWN = 0.4  # seconds after a cut in which further 429s are those of the old rate
HEAVY = 0.25  # share of 429s since a recent cut that means it was not deep enough
NEAR = 0.05  # within this share below the limit, climb slowly
FAR_GAIN = 2.0  # share of the gap to the limit closed per second when far below it
NEAR_GROWTH = 0.05  # share of the rate added per second near the limit, just after a cut
ACCEL = 3.0  # seconds without a 429 in which that growth rises by its own size
MOVED = 0.1  # served this share above the last limit: it has moved; slow start again
SLOW_UPDATES = 3  # updates in a row with a slow median before latency counts as trouble
MAX_STEP = 0.4  # seconds: a longer gap between updates was a pause, and does not count


@dataclass(frozen=True)
class Feedback:
    now: float
    ok_total: int = 0
    """Successful answers so far in the run, all processes."""
    throttled_total: int = 0
    """429 answers so far in the run, all processes."""
    answers_total: int = 0
    """Answers so far in the run but 429s, failures included, all processes."""
    answered: int = 0
    """Answers since the last overload figures (any status) to rows that had not failed yet
    in this run; 0 = no figures this time."""
    overloaded: int = 0
    """5xx answers and timeouts among them."""
    median_ms: float | None = None
    saturated: bool = False
    """Every in-flight slot was busy while the rate was not what held the run."""
    quota_rate: float = 0.0
    """What the partner's quota headers allow, requests/s (throttle.py); 0 = no headers."""


def _per_second(samples: deque[tuple[float, int]], span: float) -> float:
    """How fast a running total grew over the last `span` seconds of its (time, total)
    samples (less at the start)."""
    t1, n1 = samples[-1]
    t0, n0 = samples[0]
    for t, n in reversed(samples):
        t0, n0 = t, n
        if t <= t1 - span:
            break
    return (n1 - n0) / max(t1 - t0, 0.2) if t1 > t0 else 0.0


@dataclass(frozen=True)
class PacerPolicy:
    ceiling: float = 0.0
    """`[processing] rate_limit`; 0 = none (slow start)."""
    overload_decrease: float = 0.7
    overload_share: float = 0.2
    latency_factor: float = 2.0


class Pacer:
    def __init__(self, policy: PacerPolicy, now: float) -> None:
        self.policy = policy
        self.rate = policy.ceiling or START_RATE
        self.ramping = policy.ceiling <= 0
        self.limit = 0.0
        """The partner's limit as last measured (0 = none seen yet)."""
        self.wall = self.now = self.quiet_until = self.last = now
        self.throttled = 0
        self.history: deque[tuple[float, int]] = deque([(now, 0)])
        """(active time, successes so far): what the partner served."""
        self.answers: deque[tuple[float, int]] = deque([(now, 0)])
        """(active time, answers but 429s so far): how fast the API answers the client."""
        self.cuts = 0
        self.at_cut = (-SERVED_SPAN, 0, 0)
        """When the last cut was (active time), and the successes and 429s so far then."""
        self.best_median: float | None = None
        self.slow_updates = 0
        self.lifted = False
        """The client, not the partner, holds the run back: no rate for the limiter."""
        self.flat = (now, 0.0)
        """Since when the answers have come within `FLAT` of a level, and the level."""

    def in_force(self) -> float:
        """The rate for the shared limiter: `rate`, or 0 (none) while the rate is lifted."""
        return 0.0 if self.lifted else self.rate

    def set_ceiling(self, ceiling: float, *, at_once: bool = False) -> None:
        """A new ceiling (0 = none). `at_once` (an operator's `pipeline control rate R`): the
        rate is R from now on, and 429s still bring it down. Otherwise (a partner window began
        or ended): held at once when lower; when higher, a slow start from here finds how far
        it may go."""
        raised = ceiling <= 0 or 0 < self.policy.ceiling < ceiling
        self.policy = replace(self.policy, ceiling=ceiling)
        self.lifted = self.lifted and ceiling <= 0
        if at_once and ceiling > 0:
            self.rate, self.ramping = ceiling, False
            return
        if ceiling > 0:
            self.rate = min(self.rate, ceiling)
        if raised and self.limit == 0:
            self.ramping = True

    def served(self, now: float) -> float:
        """Successes per second over the last SERVED_SPAN seconds (less at the start)."""
        return _per_second(self.history, SERVED_SPAN)

    def answering(self) -> float:
        """Answers but 429s per second (failures too) over the last `RAMP_SPAN` seconds."""
        return _per_second(self.answers, RAMP_SPAN)

    def update(self, f: Feedback) -> float:
        self.now += min(max(0.0, f.now - self.wall), MAX_STEP)
        self.wall, now = f.now, self.now
        self._remember(now, f.ok_total, f.answers_total)
        elapsed, self.last = max(0.0, now - self.last), now
        new_429s, self.throttled = f.throttled_total - self.throttled, f.throttled_total
        overload = self._overload(f)
        if now < self.quiet_until:
            return self.in_force()
        if new_429s > 0 or overload is not None:
            factor = 1.0 if overload is None else overload
            self._cut(now, factor, f if new_429s > 0 else None)
        elif self.ramping:
            self._ramp(now, elapsed, f)
        else:
            self._climb(now, elapsed)
        return self.in_force()

    def _ramp(self, now: float, elapsed: float, f: Feedback) -> None:
        """Slow start: double, never past `UNBOUND` x how fast the API answers (past a limit
        that moved: what it serves); lift the rate while the client holds the run back (see
        the module's docstring, 1)."""
        again = self.limit > 0  # past a limit that moved: more carefully
        doubling = REPROBE_DOUBLING if again else RAMP_DOUBLING
        # Again: ahead of what the partner serves. First: of how fast the API answers, its
        # failures included, so rows it fails every time do not hold the rate to START_RATE
        # for want of successes (BENCHMARKS.md, scenario 12).
        going = self.served(now) if again else self.answering()
        self.rate *= 2.0 ** (elapsed / doubling)
        held = self.rate >= UNBOUND * going  # how fast the API answers holds the rate back
        self.rate = min(self.rate, max(START_RATE, UNBOUND * going))
        if self.policy.ceiling > 0:
            self.rate = min(self.rate, self.policy.ceiling)
        # The partner said how fast: no need to find out (the limiter holds to it).
        self.rate = max(self.rate, f.quota_rate)
        # Nothing says the partner has a limit, and how fast it answers holds the rate back.
        unknown = self.limit == 0 and self.policy.ceiling <= 0 and f.quota_rate <= 0
        self._lift(now, going, unknown and self.throttled == 0 and (held or self.lifted))

    def _lift(self, now: float, going: float, may: bool) -> None:
        """Lift the rate once the answers have come at one level (within `FLAT`, at least
        `LIFT_ABOVE` a second) for `FLAT_SECONDS`; bring it back when they come `REBIND` x
        as fast."""
        since, level = self.flat
        moved = going > REBIND * level if self.lifted else abs(going - level) > FLAT * level
        if not may or moved or going < LIFT_ABOVE:
            self.flat = since, level = now, going
        self.lifted = now - since >= FLAT_SECONDS

    def _remember(self, now: float, ok_total: int, answers_total: int) -> None:
        for samples, total in ((self.history, ok_total), (self.answers, answers_total)):
            samples.append((now, total))
            while len(samples) > 2 and samples[1][0] <= now - SERVED_SPAN:
                samples.popleft()

    def _cut(self, now: float, factor: float, throttled: Feedback | None) -> None:
        """Cut to `factor` x what was served (`throttled`: the feedback with new 429s; then
        `CUT` x what the partner allows, which becomes `limit`)."""
        served = self.served(now)
        if throttled is not None:
            served = self._allowed(now, throttled, served)
        if served <= 0:
            return  # nothing was served: no figure to go from; the rate stays
        if throttled is not None:
            self.limit = served
        self.rate = max(MIN_RATE, served * (CUT if throttled is not None else factor))
        if self.policy.ceiling > 0:
            self.rate = min(self.rate, self.policy.ceiling)
        self.ramping = self.lifted = False
        self.quiet_until = self.last = now + COOLDOWN
        self.cuts += 1
        self.at_cut = (
            (now, throttled.ok_total, throttled.throttled_total)
            if throttled
            else (
                now,
                self.history[-1][1],
                self.throttled,
            )
        )

    def _allowed(self, now: float, f: Feedback, served: float) -> float:
        """What the partner allows now, requests/s: what it served over the last second; but
        when 429s make `HEAVY` of the answers since a cut less than a second ago, what it
        served since that cut, the most of that second having been at a rate it no longer
        takes (its limit dropped, or a bucket's burst had swelled the figure). A few 429s
        after a cut are a window still holding the overshoot before it: no news."""
        at, ok, refused = self.at_cut
        if now - at >= SERVED_SPAN:
            return served
        got, refused = f.ok_total - ok, f.throttled_total - refused
        return got / max(now - at, 0.2) if refused >= HEAVY * (got + refused) else served

    def _climb(self, now: float, elapsed: float) -> None:
        limit, ceiling = self.limit or self.rate, self.policy.ceiling
        if self.rate < limit * (1 - NEAR):
            self.rate += max(MIN_STEP, (limit - self.rate) * FAR_GAIN) * elapsed
        elif self.served(now) > limit * (1 + MOVED) and self.limit > 0:
            self.ramping = True  # served well above the old limit: it is not there any more
        else:
            clean = max(0.0, now - self.quiet_until)  # seconds since the cut's 429s ended
            self.rate *= 1 + NEAR_GROWTH * (1 + clean / ACCEL) * elapsed
        if ceiling > 0:
            self.rate = min(self.rate, ceiling)
        else:  # a partner that no longer holds the run back: do not outrun what is served
            self.rate = min(self.rate, max(START_RATE, self.limit, UNBOUND * self.served(now)))

    def _overload(self, f: Feedback) -> float | None:
        """The decrease factor when the overload figures show trouble, else None."""
        p = self.policy
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
