"""A simulated run on a fake clock, for the pacing tests: the real shared limiter
(traffic/limiter.py) and the coordinator's control loop (traffic/watch.py, with the pacer)
against one of the mock's gateway kinds (mockapi/gateway.py). Only the threads and the
network are simulated: `LANES` request threads that book their place in the rate's schedule,
wait for it, send, and get their answer 20 +- 5 ms later; the coordinator ticks every 0.2 s.

`stalls`: the client's machine is loaded (other programs on the same cores): now and then
every thread of the run, and the coordinator, is frozen for a while, and what was due meanwhile
happens at once when it ends, as the partner then sees it. Seeded: every run is the same.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing
import random
import threading
from dataclasses import dataclass, field

from support import Clock

from pipeline.api.classify import Outcome, parse_quota
from pipeline.config import build_config
from pipeline.mockapi import Gateway, Schedule
from pipeline.mockapi.gateway import Verdict, limit_headers, retry_after_header
from pipeline.traffic.limiter import Booking, Limiter, Permit
from pipeline.traffic.shared import SharedLimits
from pipeline.traffic.watch import TrafficWatch

TICK = 0.2
LATENCY = 0.02
JITTER = 0.005
LANES = 64
STALL_EVERY = 4.0
"""Seconds between stalls, on average (exponential), when the machine is loaded."""
STALL_LONGEST = 0.2
"""Seconds: stalls last up to this (uniform)."""


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


class Stalls:
    """When the loaded machine freezes the client: `until(t)` is when an event due at `t`
    happens (t itself, or the end of the stall it falls in)."""

    def __init__(self, rng: random.Random, seconds: float, on: bool) -> None:
        self.spans: list[tuple[float, float]] = []
        t = rng.expovariate(1 / STALL_EVERY) if on else seconds
        while t < seconds:
            length = rng.uniform(0.02, STALL_LONGEST)
            self.spans.append((t, t + length))
            t += length + rng.expovariate(1 / STALL_EVERY)

    def until(self, t: float) -> float:
        for start, end in self.spans:
            if start <= t < end:
                return end
            if start > t:
                break
        return t


@dataclass(frozen=True)
class Event:
    what: str
    """"book": a lane looks for its place; "send": its place has come; "answer": the
    partner's answer is back; "tick": the coordinator's."""
    again: bool = False
    """The lane's request has already taken a new place once (limiter.starts)."""
    booking: Booking | None = None
    verdict: Verdict | None = None


def _answer(limiter: Limiter, verdict: Verdict, *, retry_after: bool, headers: bool) -> None:
    """What the request thread does with the answer, as far as the limiter hears of it."""
    if verdict.admitted:
        quota = parse_quota(limit_headers(verdict, "RateLimit"), 0.0) if headers else None
        limiter.release(Permit(), Outcome.SUCCESS, quota)
    else:
        limiter.release(Permit(), Outcome.THROTTLED)
        wait = float(retry_after_header(verdict.wait_s)) if retry_after else None
        limiter.throttled(wait)


def simulate(
    gateway: Gateway,
    seconds: float,
    *,
    retry_after: bool = True,
    headers: bool = False,
    schedule: Schedule | None = None,
    ceiling: float = 0.0,
    stalls: bool = False,
    seed: int = 1,
) -> Run:
    """A run with unlimited work for `seconds` against `gateway`; what the partner saw."""
    rng = random.Random(seed)
    random.seed(seed)  # the limiter spreads the threads that look again at random
    clock = Clock()
    config = build_config(
        {
            "request": {"amazon_spends": "a"},
            "processing": {"rate_limit": ceiling, "max_workers": LANES},
        }
    )
    shared = SharedLimits(multiprocessing.get_context("spawn"), 0.0, LANES)
    limiter = Limiter(shared, threading.Event(), clock=clock)
    watch = TrafficWatch(config, limiter, threading.Event(), clock)
    frozen = Stalls(rng, seconds, stalls)
    run = Run()
    order = itertools.count()
    events: list[tuple[float, int, Event]] = []

    def at(when: float, event: Event) -> None:
        heapq.heappush(events, (when, next(order), event))

    at(TICK, Event("tick"))
    for _ in range(LANES):
        at(0.0, Event("book"))
    while events:
        due, _, event = heapq.heappop(events)
        if due >= seconds:
            break
        when = frozen.until(due)
        if when > due:  # frozen: it happens when the stall ends, in the same order
            at(when, event)
            continue
        clock.now = when
        if schedule is not None and schedule.rate_at(when) != gateway.rate:
            gateway.set_rate(schedule.rate_at(when))
        if event.what == "tick":
            watch.tick()
            at(when + TICK, event)
        elif event.what == "book":
            booking = limiter.book()
            at(
                max(when, booking.at),
                Event("send" if booking.firm else "book", event.again, booking),
            )
        elif event.what == "send":
            assert event.booking is not None
            if not limiter.starts(event.booking, punctual=not event.again):
                at(when, Event("book", again=True))
                continue
            shared.slots.acquire(False)
            verdict = gateway.admit(when)
            run.sent.append(when)
            if not verdict.admitted:
                run.refused.append(when)
            at(when + LATENCY + rng.uniform(-JITTER, JITTER), Event("answer", verdict=verdict))
        else:
            assert event.verdict is not None
            _answer(limiter, event.verdict, retry_after=retry_after, headers=headers)
            at(when, Event("book"))
    return run
