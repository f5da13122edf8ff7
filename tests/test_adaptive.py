"""adaptive.py and breaker.py: the pure policies, step by step with given numbers."""

from __future__ import annotations

import pytest

from pipeline.traffic.adaptive import MIN_RATE, AimdController, AimdPolicy, Feedback
from pipeline.traffic.breaker import PROBE, SEND, WAIT, BreakerPolicy, BreakerState


def test_unlimited_until_the_first_429_then_just_under_what_was_served() -> None:
    aimd = AimdController(AimdPolicy(throttle_decrease=0.9), now=0.0)
    assert aimd.update(Feedback(now=1.0, answered=500, served_rate=500.0)) == 0.0
    rate = aimd.update(Feedback(now=2.0, answered=300, throttled=40, served_rate=50.0))
    assert rate == pytest.approx(45.0)  # 0.9 x what the API served
    assert aimd.too_fast == pytest.approx(50.0)


def test_cooldown_ignores_the_burst_of_429s_already_in_flight() -> None:
    aimd = AimdController(AimdPolicy(throttle_decrease=0.9), now=0.0)
    aimd.update(Feedback(now=1.0, throttled=5, served_rate=50.0))
    assert aimd.update(Feedback(now=2.0, throttled=9, served_rate=20.0)) == pytest.approx(45.0)
    assert aimd.decreases == 1


def test_additive_climb_slows_near_the_rate_that_was_too_fast() -> None:
    aimd = AimdController(AimdPolicy(throttle_decrease=0.9), now=0.0)
    aimd.update(Feedback(now=1.0, throttled=1, served_rate=100.0))  # 90, too fast at 100
    rates = [aimd.update(Feedback(now=3.0 + t, served_rate=90.0)) for t in range(4)]
    # 5% of the rate per second below 95, a fortieth of that above.
    assert rates[0] == pytest.approx(90.0)  # first update after the cooldown: no time passed
    assert rates[1] == pytest.approx(94.5)
    assert rates[2] == pytest.approx(94.5 * 1.05)
    assert rates[3] == pytest.approx(94.5 * 1.05 * (1 + 0.05 / 40))


def test_never_above_the_configured_limit() -> None:
    aimd = AimdController(AimdPolicy(ceiling=20.0, throttle_decrease=0.9), now=0.0)
    assert aimd.rate == 20.0
    for t in range(1, 30):
        assert aimd.update(Feedback(now=float(t), served_rate=20.0)) <= 20.0
    rate = aimd.update(Feedback(now=40.0, throttled=3, served_rate=12.0))
    assert rate == pytest.approx(10.8)
    for t in range(43, 200):
        rate = aimd.update(Feedback(now=float(t), served_rate=rate))
    assert rate == 20.0


def test_overload_share_and_latency_are_trouble_too() -> None:
    aimd = AimdController(AimdPolicy(throttle_decrease=0.9), now=0.0)
    # A few 503s among many answers are not trouble.
    assert aimd.update(Feedback(now=1.0, answered=100, overloaded=3, served_rate=97)) == 0.0
    rate = aimd.update(Feedback(now=2.0, answered=10, overloaded=5, served_rate=40.0))
    assert rate == pytest.approx(28.0)  # 0.7 x served
    latency = AimdController(AimdPolicy(throttle_decrease=0.9), now=0.0)
    latency.update(Feedback(now=1.0, median_ms=100.0, served_rate=50.0))
    assert latency.update(Feedback(now=2.0, median_ms=240.0, served_rate=50.0)) == 0.0
    for t in (3.0, 4.0):  # one or two slow seconds may be our own machine
        assert latency.update(Feedback(now=t, median_ms=400, saturated=True, served_rate=50)) == 0
    slowed = latency.update(Feedback(now=5.0, median_ms=400.0, saturated=True, served_rate=50))
    assert slowed == pytest.approx(35.0)


def test_rate_never_below_the_minimum() -> None:
    aimd = AimdController(AimdPolicy(throttle_decrease=0.9), now=0.0)
    assert aimd.update(Feedback(now=1.0, throttled=1, served_rate=0.1)) == MIN_RATE


def test_breaker_state_machine() -> None:
    policy = BreakerPolicy(threshold=3, first_probe=1.0, max_probe=4.0)
    s = BreakerState()
    s = policy.failure(s, 10.0, probe=False)
    s = policy.success(s)
    for _ in range(2):
        s = policy.failure(s, 10.0, probe=False)
    assert not s.is_open and policy.admit(s, 10.0)[1] == SEND
    s = policy.failure(s, 10.0, probe=False)
    assert s.is_open
    assert policy.admit(s, 10.5) == (s, WAIT, 11.0)
    s, verdict, _ = policy.admit(s, 11.0)
    assert verdict == PROBE
    assert policy.admit(s, 11.1)[1] == WAIT  # one probe at a time
    s = policy.failure(s, 11.2, probe=False)  # a straggler changes nothing
    s = policy.failure(s, 11.5, probe=True)
    assert (s.probe_at, s.interval) == (13.5, 2.0)
    s, _, _ = policy.admit(s, 13.5)
    s = policy.failure(s, 14.0, probe=True)
    s, _, _ = policy.admit(s, 18.0)
    s = policy.failure(s, 18.0, probe=True)
    assert s.interval == 4.0  # capped at max_probe
    assert policy.outage_seconds(s, 20.0) == 10.0
    assert policy.success(s) == BreakerState()
