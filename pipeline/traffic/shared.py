"""The shared limits' state: plain multiprocessing values that every process of the run sees
at once. limiter.py decides what to do with them; this module holds them, and `SharedHandle`
reads, counts and flips them.

The coordinator creates a `SharedLimits` and hands it to each worker process as the process
starts (it is picklable then): the rate's schedule, the run-wide pauses, the in-flight slots,
the breaker's state (breaker.py decides, every process must see it at once), the partner's
quota, the shards at work, and the counters.

Counters: successes, 429s, requests sent and ended, counted in shared memory, one set per
process (each behind its own thread lock), so that the coordinator's pacer sees them within
a tick instead of with the next progress event.
"""

from __future__ import annotations

import multiprocessing.context
import threading
import time
from collections.abc import Callable

from pipeline.traffic.breaker import BreakerPolicy, BreakerState
from pipeline.traffic.throttle import QuotaPolicy, ThrottlePolicy

COUNTER_SLOTS = 256
"""Sets of counters; each process takes the next set when it starts."""
OK, THROTTLED, STARTED, ENDED = range(4)
"""The counters of a set: successes, 429s, requests sent, requests ended (sent - ended = on
the wire)."""
_COUNTERS = 4


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
        self.last_start = ctx.Value("d", 0.0, lock=False)
        """When the last request started (clock seconds)."""
        self.cuts = ctx.Value("q", 0, lock=False)
        """How many times the rate was lowered: places booked before a cut are taken again."""
        self.paused_until = ctx.Value("d", 0.0, lock=False)
        self.paused_total = ctx.Value("d", 0.0, lock=False)
        """Seconds of run-wide pauses so far, the one in force counted whole."""
        self.held = ctx.Value("b", 0, lock=False)
        self.breaker_values = ctx.Array("d", 5, lock=False)
        self.fresh_waiting = ctx.Value("i", 0, lock=False)
        """Requests of rows that have not failed yet, waiting for the open breaker."""
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

    def breaker_state(self) -> BreakerState:
        v = self.breaker_values
        return BreakerState(int(v[0]), v[1], v[2], v[3], bool(v[4]))

    def store_breaker(self, s: BreakerState) -> None:
        v = self.breaker_values
        v[0], v[1], v[2], v[3], v[4] = (
            s.consecutive,
            s.open_since,
            s.probe_at,
            s.interval,
            s.probing,
        )

    def breaker_closed(self) -> bool:
        """Closed, read without the lock: admitting a request then changes nothing."""
        return bool(self.breaker_values[1] == 0)

    def breaker_quiet(self) -> bool:
        """Closed with no failure counted: a success has nothing to change."""
        return bool(self.breaker_values[0] == 0 and self.breaker_values[1] == 0)


class SharedHandle:
    """A process's handle on the shared state: what it reads, counts and flips without
    deciding anything (limiter.py's `Limiter` decides). Its own set of counters is taken when
    it is made."""

    def __init__(self, shared: SharedLimits, clock: Callable[[], float] = time.monotonic):
        self._shared = shared
        self._clock = clock
        self._count_lock = threading.Lock()  # the process's request threads share the set
        with shared.lock:
            self._base = _COUNTERS * (shared.counter_slots.value % COUNTER_SLOTS)
            shared.counter_slots.value += 1

    def _count(self, counter: int) -> None:
        """One more of `counter` (OK, THROTTLED, STARTED or ENDED) in this process's set."""
        with self._count_lock:
            self._shared.counts[self._base + counter] += 1

    def _sums(self) -> list[int]:
        """Each counter (OK, THROTTLED, STARTED, ENDED) summed over every process's set."""
        counts = self._shared.counts[:]
        return [sum(counts[counter::_COUNTERS]) for counter in range(_COUNTERS)]

    def totals(self) -> tuple[int, int]:
        """(successes, 429s) so far, all processes."""
        sums = self._sums()
        return sums[OK], sums[THROTTLED]

    def answers(self) -> int:
        """Answers so far but 429s (failures included; a request given up unsent counts as
        one), all processes."""
        sums = self._sums()
        return sums[ENDED] - sums[THROTTLED]

    def on_the_wire(self) -> int:
        """Requests sent and not yet answered, all processes (not those waiting their turn)."""
        sums = self._sums()
        return sums[STARTED] - sums[ENDED]

    def hold(self) -> None:
        """Hold every request of the run until `unhold()` (an operator's pause)."""
        self._shared.held.value = 1

    def unhold(self) -> None:
        self._shared.held.value = 0

    def held(self) -> bool:
        return bool(self._shared.held.value)

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
        return self._shared.breaker.outage_seconds(self._shared.breaker_state(), self._clock())

    def in_flight(self) -> int:
        """Requests holding a slot now, in all processes."""
        return self._shared.capacity - int(self._shared.slots.get_value())
