"""ratelimit.py: the shared schedule, driven by a fake clock, and across real processes."""

from __future__ import annotations

import multiprocessing
import threading
import time

from pipeline.ratelimit import Limiter, SharedLimits


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeStop:
    """A stop flag whose wait() advances the fake clock instead of sleeping."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float) -> bool:
        self.waits.append(round(timeout, 6))
        self.clock.now += timeout
        return self.flag


def make(rate: float, in_flight: int = 4) -> tuple[Limiter, FakeClock, FakeStop]:
    clock = FakeClock()
    stop = FakeStop(clock)
    shared = SharedLimits(multiprocessing.get_context("spawn"), rate, in_flight)
    return Limiter(shared, stop, clock=clock), clock, stop


def test_requests_are_spaced_at_one_over_rate() -> None:
    limiter, clock, _ = make(rate=10.0)
    starts = []
    for _ in range(5):
        assert limiter.acquire()
        starts.append(round(clock.now, 6))
        limiter.release()
    assert starts == [1000.0, 1000.1, 1000.2, 1000.3, 1000.4]


def test_no_rate_means_no_waiting() -> None:
    limiter, clock, stop = make(rate=0.0)
    for _ in range(100):
        assert limiter.acquire()
        limiter.release()
    assert stop.waits == [] and clock.now == 1000.0


def test_idle_time_is_not_banked_as_a_burst() -> None:
    limiter, clock, _ = make(rate=2.0)
    assert limiter.acquire()
    limiter.release()
    clock.now += 60.0  # a long idle spell
    starts = []
    for _ in range(3):
        limiter.acquire()
        starts.append(round(clock.now - 1060.0, 6))
        limiter.release()
    assert starts == [0.0, 0.5, 1.0]


def test_pause_holds_requests_until_it_ends() -> None:
    limiter, clock, _ = make(rate=0.0)
    limiter.pause_for(5.0)
    limiter.pause_for(1.0)  # a shorter pause never shortens the running one
    assert limiter.acquire()
    assert clock.now == 1005.0


def test_stop_ends_a_wait() -> None:
    limiter, _, stop = make(rate=0.0)
    limiter.pause_for(30.0)
    stop.flag = True
    assert limiter.acquire() is False


def test_in_flight_cap_is_shared() -> None:
    stop = threading.Event()
    shared = SharedLimits(multiprocessing.get_context("spawn"), 0.0, 2)
    limiter = Limiter(shared, stop)
    assert limiter.acquire() and limiter.acquire()
    blocked = threading.Thread(target=limiter.acquire)
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # the third waits for a slot
    limiter.release()
    blocked.join(2.0)
    assert not blocked.is_alive()


def _hammer(shared: SharedLimits, stop: object, count: int, out: object) -> None:
    limiter = Limiter(shared, stop)
    for _ in range(count):
        limiter.acquire()
        out.put(time.monotonic())  # type: ignore[attr-defined]
        limiter.release()


def test_rate_is_global_across_processes() -> None:
    """Two processes share one schedule: 40 requests at 100/s take about 0.4 s in all,
    not 0.2 s (which a per-process share of the rate would allow)."""
    ctx = multiprocessing.get_context("spawn")
    shared = SharedLimits(ctx, 100.0, 10)
    stop = ctx.Event()
    out = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(shared, stop, 20, out)) for _ in range(2)]
    for p in procs:
        p.start()
    times = sorted(out.get(timeout=30) for _ in range(40))
    for p in procs:
        p.join(10)
    # The 40th slot starts 0.39 s after the first; allow for scheduling noise on the first.
    assert times[-1] - times[0] >= 0.35
