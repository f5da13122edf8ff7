"""One rate limit, one in-flight cap and one circuit breaker for the whole run, shared by every
process and thread.

The coordinator creates a `SharedLimits` (multiprocessing primitives) and hands it to each
worker process when the process starts. Every request first calls `acquire()`, which returns
a `Permit` (or None when the run is stopping), and then `release(permit, outcome)`. Because
the state is shared (not a per-process share), a process that is idle at the end of a run
leaves its budget to the others.

Rate: a virtual schedule (GCRA). A shared `next_slot` holds the earliest time the next request
may start; each acquire takes `max(now, next_slot)` and moves `next_slot` on by `1 / rate`. The
requests are spaced evenly, so no 1-second window ever holds more than `rate + 1` of them.
No place is booked more than `HORIZON` ahead: 64 lanes booked at 10 requests/s would hold
that rate for 6 s whatever the pacer decided meanwhile (measured: a slow start that never got
past half its rate). A cut of the rate takes effect at once: the places booked before it were
spaced for a rate the partner refused, so they are given up and taken again at the new one
(measured: the quarter second of old places had doubled the 429s of each cut). So is a place
whose thread wakes more than `LATE_PLACES` places late, once (a busy machine froze it): the
requests of a stall would otherwise all start together as it ends.
`time.monotonic` is one system-wide clock on Linux, so processes agree on it. The coordinator
changes `rate` as the adaptive control decides (adaptive.py).

Pause: `pause_for(seconds)` holds every acquire in every process until then, and adds up to
`paused_total()`, so the pacer measures what was served per second on the move. A 429 comes in
through `throttled(retry_after)`, which pauses the run only as throttle.py's rule says; the
partner's quota headers come with `release` and cap the rate (throttle.py).
`hold()` (an operator's `pipeline control pause`) holds them until `unhold()`; requests
already on the wire finish.

Counts: successes, 429s, requests sent and ended are counted in shared memory (one set of
counters per process, each behind its own thread lock), so the coordinator's pacer sees them
within a tick instead of with the next progress event.

Breaker: see breaker.py; its state lives here so that every process sees it at once.
"""

from __future__ import annotations

import multiprocessing.context
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.api.classify import Outcome, Quota
from pipeline.traffic.breaker import PROBE, WAIT, BreakerPolicy, BreakerState
from pipeline.traffic.throttle import QuotaPolicy, ThrottlePolicy

# Requests are spaced for 99% of the rate, so that one starting late (a busy CPU, the GIL)
# does not crowd a 1-second window at the partner past the rate (BENCHMARKS.md, scenario 4).
RATE_MARGIN = 0.99
HOLD_POLL_SECONDS = 0.1
"""How often a request held by an operator's pause looks whether the run was resumed."""

HORIZON = 0.25
LATE_PLACES = 2
"""A request whose thread wakes this many places of the schedule late takes a new place."""
"""Seconds: how far ahead of now a request may book its place in the rate's schedule."""
COUNTER_SLOTS = 256
"""Sets of counters; each process takes the next set when it starts."""
_OK, _THROTTLED, _STARTED, _ENDED, _COUNTERS = range(5)
"""A set: successes, 429s, requests sent, requests ended (sent - ended = on the wire)."""


class SharedLimits:
    """Plain multiprocessing state; picklable while a process is being started."""

    def __init__(
        self,
        ctx: multiprocessing.context.BaseContext,
        rate: float,
        in_flight: int,
        breaker: BreakerPolicy | None = None,
    ):
        self.rate = ctx.Value("d", rate, lock=False)
        self.next_slot = ctx.Value("d", 0.0, lock=False)
        self.cuts = ctx.Value("q", 0, lock=False)
        """How many times the rate was lowered: places booked before a cut are taken again."""
        self.paused_until = ctx.Value("d", 0.0, lock=False)
        self.paused_total = ctx.Value("d", 0.0, lock=False)
        """Seconds of run-wide pauses so far, the one in force counted whole."""
        self.held = ctx.Value("b", 0, lock=False)
        self.breaker_values = ctx.Array("d", 5, lock=False)
        self.lock = ctx.Lock()
        self.slots = ctx.BoundedSemaphore(in_flight)
        self.capacity = in_flight
        self.busy_shards = ctx.Value("i", 0)
        self.breaker = breaker or BreakerPolicy()
        self.counts = ctx.Array("q", _COUNTERS * COUNTER_SLOTS, lock=False)
        self.counter_slots = ctx.Value("i", 0, lock=False)
        self.in_a_row = ctx.Value("i", 0, lock=False)
        """429s in a row, no success between (all processes)."""
        self.pauses = ctx.Value("i", 0, lock=False)
        """Pauses for many 429s in a row since the last success."""
        self.quota_rate = ctx.Value("d", 0.0, lock=False)
        """The rate the partner's quota headers allow; 0 = no headers seen."""
        self.quota_window = ctx.Value("d", 0.0, lock=False)
        self.throttle = ThrottlePolicy()
        self.quota = QuotaPolicy()


@dataclass(frozen=True)
class Permit:
    probe: bool = False
    """This request is the breaker's probe: its outcome decides whether the outage is over."""


_SEND = Permit()


@dataclass(frozen=True)
class Booking:
    at: float
    """When the request may start (clock seconds)."""
    firm: bool
    """A place in the rate's schedule; False: only when to look again."""
    cuts: int = 0
    """The limiter's count of rate cuts when the place was booked."""


class Limiter:
    """A process's handle on the shared limits."""

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
        self._count_lock = threading.Lock()
        with shared.lock:
            self._slot = _COUNTERS * (shared.counter_slots.value % COUNTER_SLOTS)
            shared.counter_slots.value += 1

    def acquire(self) -> Permit | None:
        """Block until a request may start; None when the run is stopping."""
        shared = self._shared
        while not shared.slots.acquire(timeout=0.5):
            if self._stop.is_set():
                return None
        permit = self._admit()
        if permit is None:
            shared.slots.release()
            return None
        punctual = True
        while True:
            if shared.held.value and not self._wait_while_held():
                self._count(_STARTED)  # as release counts it ended
                self.release(permit)
                return None
            booking = self.book()
            delay = booking.at - self._clock()
            if delay > 0 and self._stop.wait(delay):
                self._count(_STARTED)  # as release counts it ended
                self.release(permit)
                return None
            if self.keeps(booking, punctual=punctual):
                self._count(_STARTED)
                return permit
            punctual = False  # a place taken again is kept, however late this thread wakes

    def keeps(self, booking: Booking, *, punctual: bool = True) -> bool:
        """Whether a request may start now at the place it booked. Not when a pause began
        while it waited for its place: it takes a new one after it, so the requests that were
        waiting do not all start at its end. Nor when the rate was cut meanwhile: its place
        was spaced at the old rate, which the partner has just refused. Nor, when `punctual`,
        when this thread woke more than `LATE_PLACES` places after its own (a busy machine):
        the requests of a stall would all start at once as it ends."""
        shared, now = self._shared, self._clock()
        rate = self.rate()
        late = punctual and rate > 0 and now - booking.at > LATE_PLACES / rate
        return (
            booking.firm
            and not late
            and booking.cuts == shared.cuts.value
            and now >= shared.paused_until.value
            and not shared.held.value
        )

    def _wait_while_held(self) -> bool:
        """Wait out an operator's pause; False when the run stops meanwhile. Polled, not
        signalled: a resume must reach threads of every process, and this costs nothing."""
        while self._shared.held.value:
            if self._stop.wait(HOLD_POLL_SECONDS):
                return False
        return True

    def _admit(self) -> Permit | None:
        """Wait while the breaker is open and it is not this request's turn to probe."""
        shared = self._shared
        if shared.breaker_values[1] == 0:  # closed: admitting changes nothing, so no lock
            return _SEND
        while True:
            with shared.lock:
                now = self._clock()
                state, verdict, until = shared.breaker.admit(self._breaker(), now)
                self._store(state)
            if verdict != WAIT:
                return Permit(probe=verdict == PROBE)
            if self._stop.wait(max(0.0, min(until - now, 0.5))):
                return None

    def book(self) -> Booking:
        """When this request may start (after any pause, at its place in the rate's schedule),
        firm; or, when that place is more than `HORIZON` ahead, when to look again: a place
        booked far ahead would keep the rate of its booking, not the one the pacer has set
        since."""
        shared = self._shared
        if self.rate() <= 0:  # no rate limit: only a pause can hold the request
            now = self._clock()
            return Booking(max(now, float(shared.paused_until.value)), True)
        with shared.lock:
            earliest = max(self._clock(), shared.paused_until.value)
            rate = self.rate()
            if rate <= 0:
                return Booking(float(earliest), True)
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
        self._count(_ENDED)
        if success:
            self._count(_OK)
            if shared.in_a_row.value:
                shared.in_a_row.value = shared.pauses.value = 0  # a lost race: a shorter run
        if quota is not None:
            self._take_quota(quota)
        v = shared.breaker_values
        # The common case, a success while all is well, needs no lock: nothing to change.
        quiet = success and v[0] == 0 and v[1] == 0 and not permit.probe
        if not quiet and (success or outcome is Outcome.TRANSIENT or permit.probe):
            with shared.lock:
                state = self._breaker()
                if success:
                    state = shared.breaker.success(state)
                else:
                    state = shared.breaker.failure(state, self._clock(), probe=permit.probe)
                self._store(state)
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

    def hold(self) -> None:
        """Hold every request of the run until `unhold()` (an operator's pause)."""
        self._shared.held.value = 1

    def unhold(self) -> None:
        self._shared.held.value = 0

    def held(self) -> bool:
        return bool(self._shared.held.value)

    def throttled(self, retry_after: float | None) -> None:
        """A 429 came back (`retry_after`: its Retry-After in seconds, None = absent): count it,
        and pause the whole run when throttle.py's rule says so."""
        shared = self._shared
        self._count(_THROTTLED)
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

    def _count(self, counter: int) -> None:
        with self._count_lock:
            self._shared.counts[self._slot + counter] += 1

    def totals(self) -> tuple[int, int]:
        """(successes, 429s) so far, all processes."""
        counts = self._shared.counts[:]
        return sum(counts[_OK::_COUNTERS]), sum(counts[_THROTTLED::_COUNTERS])

    def on_the_wire(self) -> int:
        """Requests sent and not yet answered, all processes (not those waiting their turn)."""
        counts = self._shared.counts[:]
        return int(sum(counts[_STARTED::_COUNTERS]) - sum(counts[_ENDED::_COUNTERS]))

    def trip(self, first_probe: float) -> None:
        """Open the breaker now (a Retry-After too long to honour): probe after `first_probe`."""
        with self._shared.lock:
            self._store(self._shared.breaker.trip(self._breaker(), self._clock(), first_probe))

    def share(self) -> int:
        """This process's fair share of the in-flight slots: all of them when it runs the only
        shard, an even split while others run shards too. Keeping to it spares threads from
        queueing on the shared cap; the cap itself still holds the total."""
        busy = max(1, int(self._shared.busy_shards.value))
        return -(-self._shared.capacity // busy)

    def shard_started(self) -> None:
        with self._shared.busy_shards.get_lock():
            self._shared.busy_shards.value += 1

    def shard_ended(self) -> None:
        with self._shared.busy_shards.get_lock():
            self._shared.busy_shards.value -= 1

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

    def quota_rate(self) -> float:
        """The rate the partner's quota headers allow; 0 = none seen."""
        return float(self._shared.quota_rate.value)

    def rate_set(self) -> float:
        """The rate last given to `set_rate`."""
        return float(self._shared.rate.value)

    def rate(self) -> float:
        """Requests/s in force for the run (the pacer's, capped by the partner's quota
        headers); 0 = no limit."""
        rate, quota = float(self._shared.rate.value), float(self._shared.quota_rate.value)
        if quota > 0:
            return min(rate, quota) if rate > 0 else quota
        return rate

    def paused_total(self) -> float:
        """Seconds of run-wide pauses so far (the one in force counted whole)."""
        return float(self._shared.paused_total.value)

    def paused_for(self) -> float:
        """Seconds left of a run-wide pause; 0 when not paused."""
        return max(0.0, float(self._shared.paused_until.value) - self._clock())

    def outage_seconds(self) -> float:
        """How long the breaker has been open; 0 when closed."""
        return self._shared.breaker.outage_seconds(self._breaker(), self._clock())

    def in_flight(self) -> int:
        """Requests holding a slot now, in all processes."""
        return self._shared.capacity - int(self._shared.slots.get_value())

    def _breaker(self) -> BreakerState:
        v = self._shared.breaker_values
        return BreakerState(int(v[0]), v[1], v[2], v[3], bool(v[4]))

    def _store(self, s: BreakerState) -> None:
        v = self._shared.breaker_values
        v[0], v[1], v[2], v[3], v[4] = (
            s.consecutive,
            s.open_since,
            s.probe_at,
            s.interval,
            s.probing,
        )
