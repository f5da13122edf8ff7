"""The coordinator's eye on the traffic: adaptive rate and the outage deadline.

`TrafficWatch` is fed the workers' events and ticked by the coordinator (every ~0.2 s); once a
second it hands the adaptive controller what the workers saw (answers, 429s, overloads, the
rate really served, the median latency) and sets the shared limiter's rate to the answer.
When the breaker has been open for longer than `[retry] give_up_after` it sets the run's stop.
It also holds the operator's levers (`pipeline control`): hold and resume every request, a new
rate ceiling, an orderly stop.
The clock is injectable, so tests drive it without sleeping.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pipeline.config import Config
from pipeline.traffic.adaptive import AimdController, AimdPolicy, Feedback
from pipeline.traffic.limiter import Limiter
from pipeline.view.progress import EVENT_SECONDS, RateWindow, RunSnapshot, WorkerEvent

log = logging.getLogger("pipeline")
ADAPT_SECONDS = 1.0
"""How often the adaptive control looks at the workers' reports."""


class TrafficWatch:
    """The coordinator's eye on the run: adapts the shared rate from what the workers report,
    and stops the run when the API has been down for longer than `give_up_after`."""

    def __init__(self, config: Config, limiter: Limiter, stop: Any, clock: Any = time.monotonic):
        self.config = config
        self.limiter = limiter
        self.stop = stop
        self.clock = clock
        now = clock()
        p = config.processing
        self.controller = (
            AimdController(AimdPolicy(ceiling=p.rate_limit), now) if p.adaptive else None
        )
        # Successful answers per second of *active* time (not paused, from the first event
        # on): what the API really serves, not diluted by start-up or Retry-After pauses.
        self.served = RateWindow(span=3.0)
        self.served_total = 0
        self.active = 0.0
        self.last_tick = now
        self.pending: list[WorkerEvent] = []
        self.last_update = now
        self.gave_up = False
        self.ceiling = p.rate_limit
        """The rate ceiling in force: `[processing] rate_limit`, or the operator's since."""
        self.refused = ""
        """Why the API refuses the run, as the first worker to see it said; "" = it does not."""

    def event(self, event: WorkerEvent) -> None:
        if event.refused and not self.refused:
            self.refused = event.refused
            log.error("The API refuses the run: %s. Stopping; state saved.", event.refused)
            self.stop.set()
        self.pending.append(event)
        if not self.served.samples:
            self.served.add(-EVENT_SECONDS, 0)
        self.served_total += event.requests - sum(event.errors.values())

    def tick(self) -> None:
        now = self.clock()
        step, self.last_tick = now - self.last_tick, now
        if self.served.samples:
            if self._flowing():
                self.active += step
            self.served.add(self.active, self.served_total)
        outage = self.limiter.outage_seconds()
        if outage > self.config.retry.give_up_after and not self.gave_up:
            self.gave_up = True
            log.error("The API has been unavailable for %.0f s; stopping. State saved.", outage)
            self.stop.set()
        if self.controller is None or now - self.last_update < ADAPT_SECONDS:
            return
        if outage:  # the breaker has it; failures during an outage say nothing about rate
            self.pending, self.last_update = [], now
            return
        events, self.pending, self.last_update = self.pending, [], now
        latencies = sorted(ms for e in events for ms in e.latencies_ms)
        rate = self.controller.update(
            Feedback(
                now=now,
                answered=sum(e.requests for e in events),
                throttled=sum(e.errors.get("http_429", 0) for e in events),
                overloaded=sum(
                    e.errors.get("http_5xx", 0) + e.errors.get("timeout", 0) for e in events
                ),
                served_rate=self._served_rate(),
                median_ms=latencies[len(latencies) // 2] if latencies else None,
                # Only unlimited, where every busy slot is a request on the wire (under a rate
                # limit, slots are also held by requests waiting for their turn).
                saturated=self.limiter.rate() == 0
                and self.limiter.in_flight() >= self.config.processing.max_workers,
            )
        )
        if rate != self.limiter.rate():
            log.debug("Adaptive rate: %.2f requests/s", rate)
            self.limiter.set_rate(rate)

    def _flowing(self) -> bool:
        """Requests may start now: no pause of any kind, no outage."""
        limiter = self.limiter
        return limiter.paused_for() <= 0 and not limiter.held() and not limiter.outage_seconds()

    # --- the operator's levers (`pipeline control`)

    def hold(self) -> None:
        self.limiter.hold()

    def resume(self) -> None:
        self.limiter.unhold()

    def set_ceiling(self, rate: float) -> None:
        """The rate in force from now on (0 = no limit); adaptive control stays under it."""
        self.ceiling = rate
        if self.controller is not None:
            self.controller.set_ceiling(rate)
        self.limiter.set_rate(rate)

    def stop_run(self) -> None:
        """The same orderly stop as Ctrl+C: in-flight requests end, checkpoints are saved."""
        self.stop.set()

    def _served_rate(self) -> float:
        """Answers per active second over the window, taking the window as at least a second
        long: a partner that allows H per second may serve H in the first tenth of one."""
        samples = self.served.samples
        if len(samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = samples[0], samples[-1]
        return (d1 - d0) / max(t1 - t0, 1.0)

    def snapshot(self) -> RunSnapshot:
        p = self.config.processing
        outage = self.limiter.outage_seconds()
        paused = self.limiter.paused_for()
        return RunSnapshot(
            in_flight=self.limiter.in_flight(),
            max_workers=p.max_workers,
            rate_limit=self.ceiling,
            current_rate=self.limiter.rate(),
            paused_for=max(0.0, self.config.retry.give_up_after - outage) if outage else paused,
            pause_reason="outage" if outage else ("Retry-After" if paused > 0 else ""),
            held=self.limiter.held(),
        )
