"""The pacer (adaptive.py) and the throttle rules (throttle.py) against each gateway kind of the
mock (gateway.py), on a fake clock: a simulated run whose requests start at the paced rate,
as the shared limiter spaces them, and are answered 20 ms later. No sockets, no sleeping."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import pytest

from pipeline.api.classify import Quota, parse_quota
from pipeline.mockapi import Gateway, Schedule, make_gateway, parse_schedule
from pipeline.mockapi.gateway import limit_headers
from pipeline.traffic.adaptive import (
    CUT,
    MAX_STEP,
    MIN_RATE,
    NEAR_GROWTH,
    START_RATE,
    UNBOUND,
    Feedback,
    Pacer,
    PacerPolicy,
)
from pipeline.traffic.limiter import RATE_MARGIN
from pipeline.traffic.throttle import QuotaPolicy, ThrottlePolicy

TICK = 0.2
LATENCY = 0.02


@dataclass
class Run:
    """What the partner saw: send times and which were refused."""

    sent: list[float] = field(default_factory=list)
    refused: list[float] = field(default_factory=list)

    def served(self) -> float:
        """Admitted requests per second from the first request to the last."""
        span = self.sent[-1] - self.sent[0]
        return (len(self.sent) - len(self.refused)) / span

    def share_429(self) -> float:
        return len(self.refused) / len(self.sent)

    def refused_between(self, start: float, end: float) -> int:
        return sum(start <= t < end for t in self.refused)

    def served_between(self, start: float, end: float) -> float:
        sent = sum(start <= t < end for t in self.sent)
        return (sent - self.refused_between(start, end)) / (end - start)


def simulate(
    gateway: Gateway,
    seconds: float,
    *,
    retry_after: bool = True,
    headers: bool = False,
    schedule: Schedule | None = None,
    ceiling: float = 0.0,
) -> Run:
    """A run with unlimited work: requests start when the paced schedule allows, the partner
    decides at once, the answer comes LATENCY later and is fed back as the limiter would."""
    pacer, throttle, quota_policy = (
        Pacer(PacerPolicy(ceiling=ceiling), 0.0),
        ThrottlePolicy(),
        QuotaPolicy(),
    )
    rate, quota_rate, window = pacer.rate, 0.0, 0.0
    ok = throttled = in_a_row = pauses = 0
    paused_until = next_slot = 0.0
    answers: list[tuple[float, bool, float, Quota | None]] = []
    run = Run()
    t, next_tick = 0.0, TICK
    while t < seconds:
        while answers and answers[0][0] <= t:
            _, admitted, wait, quota = heapq.heappop(answers)
            if admitted:
                ok, in_a_row, pauses = ok + 1, 0, 0
                if headers and quota is not None:
                    window = quota_policy.window(window, quota)
                    quota_rate = quota_policy.cap(quota, window)
                    paused_until = max(paused_until, t + quota_policy.hold(quota))
            else:
                throttled, in_a_row = throttled + 1, in_a_row + 1
                retry = max(1.0, wait) if retry_after else None
                pause = throttle.run_pause(retry, in_a_row, pauses)
                if pause and (t >= paused_until or pause >= throttle.long_retry_after):
                    paused_until, pauses = max(paused_until, t + pause), pauses + 1
        if t >= next_tick:
            next_tick += TICK
            if t >= paused_until:
                feedback = Feedback(t, ok, throttled, quota_rate=quota_rate)
                rate = pacer.update(feedback)
        if schedule is not None:
            new = schedule.rate_at(t)
            if new != gateway.rate:
                gateway.set_rate(new)
        effective = min(rate, quota_rate) if quota_rate else rate
        start = max(next_slot, paused_until)
        if start <= t:
            verdict = gateway.admit(t)
            run.sent.append(t)
            if not verdict.admitted:
                run.refused.append(t)
            quota = parse_quota(limit_headers(verdict, "RateLimit"), 0.0)
            heapq.heappush(answers, (t + LATENCY, verdict.admitted, verdict.wait_s, quota))
            next_slot = max(t, next_slot) + 1.0 / (effective * RATE_MARGIN)
            continue
        t = min(start, next_tick, answers[0][0] if answers else start) + 1e-9
    return run


KINDS = {
    "token bucket": lambda h: make_gateway("token-bucket", h),
    "sliding 1 s": lambda h: make_gateway("sliding", h),
    "fixed 1 s": lambda h: make_gateway("fixed", h),
    "fixed 10 s": lambda h: make_gateway("fixed", h, window_s=10.0),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("hidden", [60.0, 80.0])
def test_finds_and_holds_the_hidden_limit_of_each_gateway(kind: str, hidden: float) -> None:
    run = simulate(KINDS[kind](hidden), 40.0)
    assert run.served() >= 0.9 * hidden, (run.served(), run.share_429())
    assert run.share_429() <= 0.03, (run.served(), run.share_429())
    assert run.refused_between(0.0, 5.0) <= 2 * hidden  # no flood at the start


def test_token_bucket_without_retry_after() -> None:
    run = simulate(make_gateway("token-bucket", 80.0), 40.0, retry_after=False)
    assert run.served() >= 0.9 * 80 and run.share_429() <= 0.03
    assert run.refused_between(0.0, 5.0) <= 2 * 80


@pytest.mark.parametrize("kind", ["token-bucket", "fixed", "sliding"])
def test_quota_headers_mean_almost_no_429(kind: str) -> None:
    run = simulate(make_gateway(kind, 80.0), 40.0, headers=True)
    assert run.served() >= 0.9 * 80 and run.share_429() <= 0.005, (run.served(), run.share_429())


def test_follows_a_limit_that_moves() -> None:
    schedule = Schedule(80.0, parse_schedule("20:30,40:80"))
    run = simulate(make_gateway("token-bucket", 80.0), 60.0, schedule=schedule)
    assert run.served_between(24.0, 25.0) >= 0.8 * 30
    assert run.served_between(44.0, 45.0) >= 0.8 * 80, run.served_between(44.0, 45.0)
    assert run.share_429() <= 0.05


def test_configured_rate_is_held_and_never_exceeded() -> None:
    run = simulate(make_gateway("sliding", 1000.0), 10.0, ceiling=50.0)
    assert not run.refused and run.served() == pytest.approx(50 * RATE_MARGIN, rel=0.02)


def test_slow_start_doubles_and_does_not_outrun_what_is_served() -> None:
    pacer = Pacer(PacerPolicy(), now=0.0)
    assert pacer.rate == START_RATE
    ok = 0
    for step in range(1, 8):  # the partner serves all of it
        ok += int(pacer.rate * 0.2)
        pacer.update(Feedback(now=step * 0.2, ok_total=ok))
    assert pacer.rate > 3 * START_RATE
    stuck = Pacer(PacerPolicy(), now=0.0)
    for step in range(1, 40):  # 20 answers a second, whatever the rate: latency holds it
        stuck.update(Feedback(now=step * 0.2, ok_total=4 * step))
    assert stuck.rate == pytest.approx(UNBOUND * 20.0, rel=0.05)


def test_cut_is_to_what_was_served_not_a_fixed_fraction() -> None:
    pacer = Pacer(PacerPolicy(), now=0.0)
    for step in range(1, 11):  # 2 s at 73 served a second
        pacer.update(Feedback(now=step * 0.2, ok_total=int(73 * 0.2 * step)))
    rate = pacer.update(Feedback(now=2.2, ok_total=160, throttled_total=30))
    assert rate == pytest.approx(CUT * pacer.limit) and 70 <= pacer.limit <= 76
    # The 429s of requests already on their way change nothing for a second.
    assert pacer.update(Feedback(now=2.6, ok_total=170, throttled_total=80)) == rate
    assert Pacer(PacerPolicy(), 0.0).update(Feedback(now=1.0, throttled_total=3)) == START_RATE
    low = Pacer(PacerPolicy(ceiling=50.0), 0.0)
    low.update(Feedback(now=1.0, ok_total=0))
    assert low.update(Feedback(now=2.0, ok_total=0, throttled_total=1)) >= MIN_RATE


def test_climb_is_fast_far_below_the_limit_slow_near_it_and_fast_again_above() -> None:
    pacer = Pacer(PacerPolicy(), now=0.0)
    pacer.ramping, pacer.limit, pacer.rate = False, 100.0, 40.0
    ok, rates = 0, []
    for step in range(1, 60):
        ok += int(pacer.rate * 0.2)
        rates.append(pacer.update(Feedback(now=step * 0.2, ok_total=ok)))
    assert rates[4] > 90  # far: most of the gap closed within a second
    near = [r for r in rates if 95 <= r <= 100]
    assert 4 <= len(near) <= 12  # ~1 s creeping up to the old limit
    above = rates.index(next(r for r in rates if r > 100))
    assert rates[above + 20] > 180  # not touched for 4 s: the limit has moved


def test_overload_cuts_to_a_share_of_what_was_served() -> None:
    pacer = Pacer(PacerPolicy(ceiling=100.0), now=0.0)
    for step in range(1, 6):  # 90 a second
        pacer.update(Feedback(now=step * 0.2, ok_total=18 * step))
    assert pacer.update(Feedback(now=1.2, ok_total=108, answered=100, overloaded=3)) == 100.0
    # A fifth of the answers 5xx or timeouts: the API struggles; 0.7 x the 90 it served.
    rate = pacer.update(Feedback(now=1.4, ok_total=126, answered=50, overloaded=25))
    assert rate == pytest.approx(0.7 * 90)


def test_a_pause_does_not_count_as_time_served_nor_climbed() -> None:
    pacer = Pacer(PacerPolicy(), now=0.0)
    pacer.ramping, pacer.limit, pacer.rate = False, 60.0, 58.0
    for step in range(1, 6):
        before = pacer.update(Feedback(now=step * 0.2, ok_total=12 * step))
    # Five seconds paused (no updates), then the first update: as if 0.4 s had passed.
    rate = pacer.update(Feedback(now=6.0, ok_total=72))
    assert pacer.served(6.0) >= 45.0  # not 12 a second, as over 5 s of wall time
    assert rate == pytest.approx(before * (1 + NEAR_GROWTH * MAX_STEP))


def test_run_pause_rule() -> None:
    rule = ThrottlePolicy()
    assert rule.run_pause(1.0, 1) == 0.0  # a token bucket's 1 s: only the row waits
    assert rule.run_pause(1.0, 3) == 0.0
    # Everything refused: everyone waits, briefly, then longer while it lasts.
    assert [rule.run_pause(1.0, 4, n) for n in range(5)] == [0.1, 0.2, 0.4, 0.8, 1.0]
    assert rule.run_pause(None, 9, 9) == 1.0
    assert rule.run_pause(6.0, 1) == 6.0  # a spent window: nothing gets through till then


def test_parse_quota_both_spellings_and_unix_time() -> None:
    ietf = {"RateLimit-Limit": "80", "RateLimit-Remaining": "12", "RateLimit-Reset": "1"}
    assert parse_quota(ietf, 0.0) == Quota(80, 12, 1.0)
    x = {
        "X-RateLimit-Limit": "600",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "1700000007",
    }
    assert parse_quota(x, 1_700_000_000.0) == Quota(600, 0, 7.0)
    assert parse_quota({"RateLimit-Limit": "80"}, 0.0) is None
    assert parse_quota({**ietf, "RateLimit-Remaining": "many"}, 0.0) is None
    policy = QuotaPolicy()
    assert policy.window(0.0, Quota(80, 5, 0.0)) == 1.0
    assert policy.cap(Quota(600, 5, 3.0), policy.window(10.0, Quota(600, 5, 3.0))) == pytest.approx(
        58.2
    )
    assert policy.hold(Quota(600, 1, 3.0)) == 3.0 and policy.hold(Quota(600, 2, 3.0)) == 0.0
