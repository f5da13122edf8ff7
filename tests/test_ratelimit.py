"""traffic/limiter.py: the shared schedule, driven by a fake clock, and across real processes."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time

import pytest

from pipeline.api.classify import Outcome, Quota
from pipeline.traffic.limiter import RATE_MARGIN, Limiter
from pipeline.traffic.shared import SharedLimits


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
        permit = limiter.acquire()
        assert permit is not None
        starts.append(round(clock.now, 6))
        limiter.release(permit)
    gap = 0.1 / RATE_MARGIN
    assert starts == [round(1000.0 + i * gap, 6) for i in range(5)]


def test_no_rate_means_no_waiting() -> None:
    limiter, clock, stop = make(rate=0.0)
    for _ in range(100):
        permit = limiter.acquire()
        assert permit is not None
        limiter.release(permit)
    assert stop.waits == [] and clock.now == 1000.0


def test_a_rate_lifted_after_one_was_set_means_no_waiting() -> None:
    # An operator's `control rate 0`, a partner window ending, or the pacer lifting its rate:
    # the places booked before count for nothing, and every request starts at once.
    limiter, clock, stop = make(rate=0.0)
    limiter.set_rate(10.0)
    limiter.set_rate(5.0)  # a cut: places of the old rate are taken again
    limiter.set_rate(0.0)
    for _ in range(100):
        permit = limiter.acquire()
        assert permit is not None
        limiter.release(permit)
    assert stop.waits == [] and clock.now == 1000.0


def test_idle_time_is_not_banked_as_a_burst() -> None:
    limiter, clock, _ = make(rate=2.0)
    permit = limiter.acquire()
    assert permit is not None
    limiter.release(permit)
    clock.now += 60.0  # a long idle spell
    starts = []
    for _ in range(3):
        permit = limiter.acquire()
        assert permit is not None
        starts.append(round(clock.now - 1060.0, 6))
        limiter.release(permit)
    assert starts == [0.0, round(0.5 / RATE_MARGIN, 6), round(1.0 / RATE_MARGIN, 6)]


def test_pause_holds_requests_until_it_ends() -> None:
    limiter, clock, _ = make(rate=0.0)
    limiter.pause_for(5.0)
    limiter.pause_for(1.0)  # a shorter pause never shortens the running one
    assert limiter.acquire() is not None
    assert clock.now == 1005.0


def test_stop_ends_a_wait() -> None:
    limiter, _, stop = make(rate=0.0)
    limiter.pause_for(30.0)
    stop.flag = True
    assert limiter.acquire() is None


def test_in_flight_cap_is_shared() -> None:
    stop = threading.Event()
    shared = SharedLimits(multiprocessing.get_context("spawn"), 0.0, 2)
    limiter = Limiter(shared, stop)
    first, second = limiter.acquire(), limiter.acquire()
    assert first is not None and second is not None
    blocked = threading.Thread(target=limiter.acquire)
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive()  # the third waits for a slot
    limiter.release(first)
    blocked.join(2.0)
    assert not blocked.is_alive()


def _hammer(shared: SharedLimits, stop: object, count: int, out: object) -> None:
    limiter = Limiter(shared, stop)
    for _ in range(count):
        permit = limiter.acquire()
        assert permit is not None
        out.put(time.monotonic())  # type: ignore[attr-defined]
        limiter.release(permit)


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


def test_breaker_opens_holds_requests_and_lets_one_probe_through() -> None:
    limiter, clock, _ = make(rate=0.0, in_flight=8)
    for _ in range(5):  # the default threshold
        permit = limiter.acquire()
        assert permit is not None and not permit.probe
        limiter.release(permit, Outcome.TRANSIENT)
    assert limiter.outage_seconds() == 0.0  # opened just now
    clock.now += 0.5
    assert limiter.outage_seconds() == 0.5
    probe = limiter.acquire()  # waits for the first probe time (1 s after opening)
    assert probe is not None and probe.probe
    assert clock.now == pytest.approx(1001.0)
    limiter.release(probe, Outcome.TRANSIENT)  # still down: next probe 2 s later
    probe = limiter.acquire()
    assert probe is not None and probe.probe
    assert clock.now == pytest.approx(1003.0)
    limiter.release(probe, Outcome.SUCCESS)  # back up: closed
    assert limiter.outage_seconds() == 0.0
    permit = limiter.acquire()
    assert permit is not None and not permit.probe
    assert clock.now == pytest.approx(1003.0)


def test_a_failed_probe_of_a_row_that_failed_before_closes_the_breaker() -> None:
    limiter, clock, _ = make(rate=0.0, in_flight=8)
    for fresh in (True,) * 4 + (False,) * 9 + (True,):
        clock.now += 0.1
        # Rows that failed before leave it as it is; the fifth fresh failure opens it.
        assert limiter.outage_seconds() == 0.0
        permit = limiter.acquire(fresh)
        assert permit is not None and permit.fresh == fresh and not permit.probe
        limiter.release(permit, Outcome.TRANSIENT)
    opened = clock.now
    clock.now += 0.5
    assert limiter.outage_seconds() == pytest.approx(0.5)
    probe = limiter.acquire(fresh=False)  # no fresh row waits: this row probes
    assert probe is not None and probe.probe and not probe.fresh
    assert clock.now == pytest.approx(opened + 1.0)
    limiter.release(probe, Outcome.TRANSIENT)
    assert limiter.outage_seconds() == 0.0  # closed: the failure was the row's own
    permit = limiter.acquire(fresh=False)
    assert permit is not None and not permit.probe
    assert clock.now == pytest.approx(opened + 1.0)


def test_429_and_permanent_errors_do_not_trip_the_breaker() -> None:
    limiter, _, _ = make(rate=0.0)
    for _ in range(20):
        permit = limiter.acquire()
        assert permit is not None
        limiter.release(permit, Outcome.THROTTLED)
    assert limiter.outage_seconds() == 0.0


def test_trip_for_a_retry_after_too_long_to_honour() -> None:
    limiter, clock, _ = make(rate=0.0)
    limiter.trip(30.0)
    probe = limiter.acquire()
    assert probe is not None and probe.probe
    assert clock.now == pytest.approx(1030.0)


def test_successes_and_429s_are_counted_for_the_pacer_and_many_in_a_row_pause() -> None:
    limiter, clock, _ = make(rate=0.0)
    for _ in range(3):
        permit = limiter.acquire()
        assert permit is not None
        limiter.release(permit, Outcome.SUCCESS)
    limiter.throttled(1.0)  # a token bucket's 1 s among successes: nobody else waits
    assert limiter.totals() == (3, 1) and limiter.paused_for() == 0.0
    for _ in range(3):  # the fourth in a row: the partner refuses everything right now
        limiter.throttled(1.0)
    assert limiter.paused_for() == pytest.approx(0.1)
    permit = limiter.acquire()
    assert permit is not None and clock.now == pytest.approx(1000.1)
    limiter.release(permit, Outcome.SUCCESS)
    limiter.throttled(1.0)  # the success broke the run of 429s
    assert limiter.paused_for() == 0.0
    limiter.throttled(6.0)  # a spent window: everyone waits for it
    assert limiter.paused_for() == pytest.approx(6.0)
    assert limiter.totals() == (4, 6)


def test_quota_headers_cap_the_rate_and_hold_at_the_reserve() -> None:
    limiter, clock, _ = make(rate=200.0)
    permit = limiter.acquire()
    assert permit is not None
    limiter.release(permit, Outcome.SUCCESS, Quota(limit=600, remaining=400, reset_s=10.0))
    assert limiter.rate() == pytest.approx(0.97 * 60) and limiter.rate_set() == 200.0
    permit = limiter.acquire()
    assert permit is not None
    limiter.release(permit, Outcome.SUCCESS, Quota(limit=600, remaining=1, reset_s=3.0))
    assert limiter.paused_for() == pytest.approx(3.0)  # Remaining would reach 0 before Reset
    assert limiter.acquire() is not None and clock.now == pytest.approx(1003.0, abs=0.02)


def test_a_cut_takes_effect_at_once_places_booked_at_the_old_rate_are_taken_again() -> None:
    limiter, clock, _ = make(rate=100.0, in_flight=64)
    booked = [limiter.book() for _ in range(20)]  # a fifth of a second ahead, 100 a second
    assert all(b.firm for b in booked) and booked[-1].at > 1000.18
    limiter.set_rate(50.0)  # the partner refused 100 a second
    clock.now = booked[10].at
    assert not limiter.starts(booked[10])  # spaced for the old rate: it takes a new place
    again = [limiter.book() for _ in range(3)]
    gap = 1 / (50.0 * RATE_MARGIN)
    assert [b.at - again[0].at for b in again] == pytest.approx([0.0, gap, 2 * gap])
    assert again[0].at == pytest.approx(clock.now) and limiter.starts(again[0])
    limiter.set_rate(80.0)  # a rise leaves the places booked as they are
    assert limiter.starts(again[0])


def test_after_a_stall_the_requests_due_start_spaced_not_all_at_once() -> None:
    limiter, clock, _ = make(rate=100.0, in_flight=64)
    booked = [limiter.book() for _ in range(10)]
    clock.now = booked[0].at + 0.015  # late by 1.5 places: still its place
    assert limiter.starts(booked[0])
    clock.now = booked[9].at + 0.2  # a stall: every place booked has passed
    assert limiter.starts(booked[1])  # the first to wake has room before it: it goes
    gap = 1 / (100.0 * RATE_MARGIN)
    starts = [clock.now]
    for late in booked[2:]:  # the others would start on its heels: each takes a new place
        assert not limiter.starts(late)
        again = limiter.book()
        clock.now = max(clock.now, again.at)
        assert limiter.starts(again, punctual=False)  # kept, however late it wakes
        starts.append(clock.now)
    assert [b - a for a, b in itertools.pairwise(starts)] == pytest.approx([gap] * 8)


def test_a_thread_a_little_late_on_a_busy_machine_keeps_its_place() -> None:
    limiter, clock, _ = make(rate=500.0, in_flight=64)
    booked = [limiter.book() for _ in range(40)]
    for place in booked:  # every thread wakes 25 ms (12 places) late: none loses its place
        clock.now = place.at + 0.025
        assert limiter.starts(place)
    # Through acquire: a thread that wakes a second late starts at once, and the next
    # request is spaced after it rather than due at once as well.
    other, fake, stop = make(rate=10.0)
    assert other.acquire() is not None
    stop.wait = lambda timeout: (setattr(fake, "now", fake.now + timeout + 1.0), False)[1]  # type: ignore[method-assign]
    assert other.acquire() is not None
    assert other.book().at == pytest.approx(fake.now + 0.1 / RATE_MARGIN)


def test_pauses_are_added_up_for_the_pacer() -> None:
    limiter, clock, _ = make(rate=0.0)
    limiter.pause_for(1.0)
    limiter.pause_for(0.5)  # inside the first: nothing more
    clock.now += 0.5
    limiter.pause_for(2.0)  # 1.5 s past the first's end
    assert limiter.paused_total() == pytest.approx(2.5)
    clock.now += 10.0
    limiter.pause_for(0.1)
    assert limiter.paused_total() == pytest.approx(2.6)
