"""One rate limit, one in-flight cap and one circuit breaker for the whole run, shared by every
process and thread.

The state is a `SharedLimits` (shared.py), made by the coordinator and handed to each worker
process; each process has a `Limiter` on it. Every request first calls `acquire()`, which
returns a `Permit` (or None when the run is stopping), and then `release(permit, outcome)`.
Because the state is shared (not a per-process share), a process that is idle at the end of a
run leaves its budget to the others.

Rate: a virtual schedule (GCRA). A shared `next_slot` holds the earliest time the next request
may start; each acquire takes `max(now, next_slot)` and moves `next_slot` on by `1 / rate`. The
requests are spaced evenly, so no 1-second window ever holds more than `rate + 1` of them.
No place is booked more than `HORIZON` ahead: 64 lanes booked at 10 requests/s would hold
that rate for 6 s whatever the pacer decided meanwhile (measured: a slow start that never got
past half its rate). A cut of the rate takes effect at once: the places booked before it were
spaced for a rate the partner refused, so they are given up and taken again at the new one
(measured: the quarter second of old places had doubled the 429s of each cut). So is, once,
a place whose thread wakes late (a busy machine froze it) right on the heels of another
start: the requests of a stall would otherwise all start together as it ends. A thread a
little late with room before it keeps its place, so a loaded machine does not lose the rate,
and the next place is spaced after its start.
`time.monotonic` is one system-wide clock on Linux, so processes agree on it. The coordinator
changes `rate` as the adaptive control decides (adaptive.py).

Pause: `pause_for(seconds)` holds every acquire in every process until then, and adds up to
`paused_total()`, so the pacer measures what was served per second on the move. A 429 comes in
through `throttled(retry_after)`, which pauses the run only as throttle.py's rule says; the
partner's quota headers come with `release` and cap the rate (throttle.py).
`hold()` (an operator's `pipeline control pause`) holds them until `unhold()`; requests
already on the wire finish.

Counts (shared.py): successes, 429s, requests sent and ended, which the pacer reads within a
tick. Breaker: breaker.py decides; its state is shared so that every process sees it at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.api.classify import Outcome, Quota
from pipeline.traffic.breaker import PROBE, WAIT
from pipeline.traffic.shared import ENDED, OK, STARTED, THROTTLED, SharedHandle, SharedLimits

# Requests are spaced for 99% of the rate, so that one starting late (a busy CPU, the GIL)
# does not crowd a 1-second window at the partner past the rate (BENCHMARKS.md, scenario 4).
RATE_MARGIN = 0.99
HOLD_POLL_SECONDS = 0.1
"""How often a request held by an operator's pause looks whether the run was resumed."""

HORIZON = 0.25
"""Seconds: how far ahead of now a request may book its place in the rate's schedule."""
LATE_PLACES = 2
LATE_SECONDS = 0.02
"""A request whose thread wakes this many places of the schedule late, and this long, takes
a new place if it would start less than `CROWDED` places after the last start."""
CROWDED = 0.5


@dataclass(frozen=True)
class Permit:
    probe: bool = False
    """This request is the breaker's probe: its outcome decides whether the outage is over."""
    fresh: bool = True
    """The request is for a row that has not failed yet in this run (breaker.py)."""


_SEND, _SEND_AGAIN = Permit(), Permit(fresh=False)


@dataclass(frozen=True)
class Booking:
    at: float
    """When the request may start (clock seconds)."""
    firm: bool
    """A place in the rate's schedule; False: only when to look again."""
    cuts: int = 0
    """The limiter's count of rate cuts when the place was booked."""


class Limiter(SharedHandle):
    """A process's handle on the shared limits: the request path and the rate's schedule."""

    def __init__(
        self,
        shared: SharedLimits,
        stop: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(shared, clock)
        self._stop = stop

    def acquire(self, fresh: bool = True) -> Permit | None:
        """Block until a request may start; None when the run is stopping. `fresh`: the
        request is for a row that has not failed yet in this run."""
        shared = self._shared
        while not shared.slots.acquire(timeout=0.5):
            if self._stop.is_set():
                return None
        permit = self._admit(fresh)
        if permit is None:
            shared.slots.release()
            return None
        punctual = True
        while True:
            if shared.held.value and not self._wait_while_held():
                self._count(STARTED)  # as release counts it ended
                self.release(permit)
                return None
            booking = self.book()
            delay = booking.at - self._clock()
            if delay > 0 and self._stop.wait(delay):
                self._count(STARTED)  # as release counts it ended
                self.release(permit)
                return None
            if self.starts(booking, punctual=punctual):
                self._count(STARTED)
                return permit
            punctual = False  # a place taken again is kept, however late this thread wakes

    def starts(self, booking: Booking, *, punctual: bool = True) -> bool:
        """Whether a request starts now at the place it booked (True: it does, and the start
        is noted). Not when a pause began while it waited for its place: it takes a new one
        after it, so the requests that were waiting do not all start at its end. Nor when
        the rate was cut meanwhile: its place was spaced at the old rate, which the partner
        has just refused. Nor, when `punctual`, when its thread woke late (`LATE_PLACES`
        places and `LATE_SECONDS`: a busy machine froze it) right on the heels of another
        start: the requests of a stall would all start at once as it ends. A late thread
        with room before it keeps its place, so a loaded machine does not lose the rate."""
        shared, now = self._shared, self._clock()
        rate = self.rate()
        late = rate > 0 and now - booking.at > max(LATE_PLACES / rate, LATE_SECONDS)
        crowding = punctual and late and now - shared.last_start.value < CROWDED / rate
        go = (
            booking.firm
            and not crowding
            and booking.cuts == shared.cuts.value
            and now >= shared.paused_until.value
            and not shared.held.value
        )
        if go:
            shared.last_start.value = now
            if rate > 0 and now + 1.0 / (rate * RATE_MARGIN) > shared.next_slot.value:
                with shared.lock:  # a late start: the next place is after it, not before
                    gap = now + 1.0 / (rate * RATE_MARGIN)
                    shared.next_slot.value = max(shared.next_slot.value, gap)
        return go

    def _wait_while_held(self) -> bool:
        """Wait out an operator's pause; False when the run stops meanwhile. Polled, not
        signalled: a resume must reach threads of every process, and this costs nothing."""
        while self._shared.held.value:
            if self._stop.wait(HOLD_POLL_SECONDS):
                return False
        return True

    def _admit(self, fresh: bool) -> Permit | None:
        """Wait while the breaker is open and it is not this request's turn to probe."""
        shared = self._shared
        if shared.breaker_closed():  # admitting changes nothing, so no lock
            return _SEND if fresh else _SEND_AGAIN
        with shared.lock:
            shared.fresh_waiting.value += fresh
        try:
            while True:
                with shared.lock:
                    now = self._clock()
                    state, verdict, until = shared.breaker.admit(
                        shared.breaker_state(),
                        now,
                        fresh=fresh,
                        fresh_waiting=shared.fresh_waiting.value,
                    )
                    shared.store_breaker(state)
                if verdict != WAIT:
                    return Permit(probe=verdict == PROBE, fresh=fresh)
                if self._stop.wait(max(0.0, min(until - now, 0.5))):
                    return None
        finally:
            with shared.lock:
                shared.fresh_waiting.value -= fresh

    def book(self) -> Booking:
        """When this request may start (after any pause, at its place in the rate's schedule),
        firm; or, when that place is more than `HORIZON` ahead, when to look again: a place
        booked far ahead would keep the rate of its booking, not the one the pacer has set
        since."""
        shared = self._shared
        if self.rate() <= 0:  # no rate limit: only a pause can hold the request
            now = self._clock()
            return Booking(max(now, float(shared.paused_until.value)), True, int(shared.cuts.value))
        with shared.lock:
            earliest = max(self._clock(), shared.paused_until.value)
            rate = self.rate()
            if rate <= 0:
                return Booking(float(earliest), True, int(shared.cuts.value))
            start = max(earliest, shared.next_slot.value)
            if start - earliest > HORIZON:
                # Spread the lanes that look again, so they do not all wake at once.
                return Booking(float(start - HORIZON + random.uniform(0.0, HORIZON / 2)), False)
            shared.next_slot.value = start + 1.0 / (rate * RATE_MARGIN)
            return Booking(float(start), True, int(shared.cuts.value))

    def release(
        self, permit: Permit, outcome: Outcome | None = None, quota: Quota | None = None
    ) -> None:
        """Give back the slot and tell the breaker how the request went: a success closes it,
        a transient failure counts against it, any other outcome (or None: no call was made)
        says nothing, but for a probe, which fails unless it succeeds. `quota`: what the
        answer's quota headers said, if it had them."""
        shared = self._shared
        success = outcome is Outcome.SUCCESS
        self._count(ENDED)
        if success:
            self._count(OK)
            if shared.in_a_row.value:
                shared.in_a_row.value = shared.pauses.value = 0  # a lost race: a shorter run
        if quota is not None:
            self._take_quota(quota)
        # The common case, a success while all is well, needs no lock: nothing to change.
        quiet = success and shared.breaker_quiet() and not permit.probe
        if not quiet and (success or outcome is Outcome.TRANSIENT or permit.probe):
            with shared.lock:
                state = shared.breaker_state()
                if success:
                    state = shared.breaker.success(state)
                else:
                    state = shared.breaker.failure(
                        state, self._clock(), probe=permit.probe, fresh=permit.fresh
                    )
                shared.store_breaker(state)
        shared.slots.release()

    def pause_for(self, seconds: float) -> None:
        """Hold every request of the run for `seconds` from now (never shortens a pause)."""
        shared = self._shared
        with shared.lock:
            now = self._clock()
            until = now + seconds
            if until > shared.paused_until.value:
                shared.paused_total.value += until - max(now, shared.paused_until.value)
                shared.paused_until.value = until

    def throttled(self, retry_after: float | None) -> None:
        """A 429 came back (`retry_after`: its Retry-After in seconds, None = absent): count it,
        and pause the whole run when throttle.py's rule says so."""
        shared = self._shared
        self._count(THROTTLED)
        with shared.lock:
            shared.in_a_row.value += 1
            paused = shared.paused_until.value > self._clock()
            pause = shared.throttle.run_pause(
                retry_after, shared.in_a_row.value, shared.pauses.value
            )
            if pause > 0 and (not paused or pause >= shared.throttle.long_retry_after):
                shared.pauses.value += 1
            else:
                pause = 0.0  # sent before the pause in force: nothing new
        if pause > 0:
            self.pause_for(pause)

    def _take_quota(self, quota: Quota) -> None:
        shared, policy = self._shared, self._shared.quota
        window = policy.window(shared.quota_window.value, quota)
        shared.quota_window.value = window
        shared.quota_rate.value = policy.cap(quota, window)
        hold = policy.hold(quota)
        if hold > 0:
            self.pause_for(hold)

    def trip(self, first_probe: float) -> None:
        """Open the breaker now (a Retry-After too long to honour): probe after `first_probe`."""
        shared = self._shared
        with shared.lock:
            shared.store_breaker(
                shared.breaker.trip(shared.breaker_state(), self._clock(), first_probe)
            )

    def set_rate(self, rate: float) -> None:
        """The run's rate from now on (0 = none). A lower one takes effect at once: the places
        booked at the old one are given up and taken again, spaced at the new rate from now."""
        shared = self._shared
        with shared.lock:
            old = self.rate()
            shared.rate.value = rate
            new = self.rate()
            if 0 < new < old or (new > 0 and old <= 0):
                shared.cuts.value += 1
                shared.next_slot.value = min(shared.next_slot.value, self._clock())
