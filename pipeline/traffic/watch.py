"""The coordinator's eye on the traffic: the pacer and the outage deadline.

`TrafficWatch` is fed the workers' events and ticked by the coordinator (every ~0.2 s). Each
tick it hands the pacer (adaptive.py) the run's running totals of successes and 429s from the
shared limiter, and once a second the overload figures of the events (5xx, timeouts, the
median latency), and sets the shared limiter's rate to the answer. While the run is paused
(a Retry-After, the partner's quota) or the breaker is open, the pacer is not asked: what is
served then says nothing about the partner's limit.
Partner windows (windows.py) set the pacer's ceiling, looked at about once a second.
When the breaker has been open for longer than `[retry] give_up_after` it sets the run's stop.
It also holds the operator's levers (`pipeline control`): hold and resume every request, a new
rate ceiling, an orderly stop.
The clock is injectable, so tests drive it without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from pipeline.config import Config
from pipeline.traffic.adaptive import Feedback, Pacer, PacerPolicy
from pipeline.traffic.limiter import Limiter
from pipeline.traffic.windows import rate_at, schedule_text
from pipeline.view.progress import RunSnapshot, WorkerEvent

log = logging.getLogger("pipeline")
ADAPT_SECONDS = 1.0
"""How often the pacer is given the overload figures of the workers' events."""


class TrafficWatch:
    """The coordinator's eye on the run: paces the shared rate from what the workers report,
    and stops the run when the API has been down for longer than `give_up_after`."""

    def __init__(
        self,
        config: Config,
        limiter: Limiter,
        stop: Any,
        clock: Any = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self.config = config
        self.limiter = limiter
        self.stop = stop
        self.clock = clock
        self.wall = wall
        now = clock()
        p = config.processing
        self.ceiling = rate_at(p.windows, wall(), p.rate_limit)
        """The rate ceiling in force: the partner window's, `[processing] rate_limit`, or the
        operator's since `pipeline control rate`."""
        self.operator_rate = False
        self.window_text = schedule_text(p.windows, wall(), p.rate_limit)
        self.pacer = Pacer(PacerPolicy(ceiling=self.ceiling), now) if p.adaptive else None
        limiter.set_rate(self.pacer.in_force() if self.pacer is not None else self.ceiling)
        self.pending: list[WorkerEvent] = []
        self.last_update = now
        self.gave_up = False
        self.refused = ""
        """Why the API refuses the run, as the first worker to see it said; "" = it does not."""

    def event(self, event: WorkerEvent) -> None:
        if event.refused and not self.refused:
            self.refused = event.refused
            log.error("The API refuses the run: %s. Stopping; state saved.", event.refused)
            self.stop.set()
        self.pending.append(event)

    def tick(self) -> None:
        now = self.clock()
        outage = self.limiter.outage_seconds()
        if outage > self.config.retry.give_up_after and not self.gave_up:
            self.gave_up = True
            log.error("The API has been unavailable for %.0f s; stopping. State saved.", outage)
            self.stop.set()
        figures = now - self.last_update >= ADAPT_SECONDS
        if figures and self.config.processing.windows:
            self._follow_windows()
        if self.pacer is None:
            self.last_update = now if figures else self.last_update
            return
        events: list[WorkerEvent] = []
        if figures:
            events, self.pending, self.last_update = self.pending, [], now
        if not self._flowing():
            return
        rate = self.pacer.update(self._feedback(now, events))
        if abs(rate - self.limiter.rate_set()) > 1e-9:
            log.debug("Pacing: %.2f requests/s (served %.1f/s)", rate, self.pacer.served(now))
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
        """The rate in force from now on (0 = no limit); the pacer stays under it, and the
        partner windows no longer set it: the operator has decided."""
        self.ceiling, self.operator_rate = rate, True
        if self.pacer is not None:
            self.pacer.set_ceiling(rate, at_once=True)
            self.limiter.set_rate(self.pacer.in_force())
        else:
            self.limiter.set_rate(rate)

    def stop_run(self) -> None:
        """The same orderly stop as Ctrl+C: in-flight requests end, checkpoints are saved."""
        self.stop.set()

    def _follow_windows(self) -> None:
        """The partner window in force sets the ceiling (checked about once a second)."""
        p = self.config.processing
        wall = self.wall()
        ceiling = rate_at(p.windows, wall, p.rate_limit)
        self.window_text = schedule_text(p.windows, wall, p.rate_limit)
        if ceiling == self.ceiling or self.operator_rate:
            return
        log.info("Partner window: %s", self.window_text)
        self.ceiling = ceiling
        if self.pacer is not None:
            self.pacer.set_ceiling(ceiling)
            self.limiter.set_rate(self.pacer.in_force())
        else:
            self.limiter.set_rate(ceiling)

    def _feedback(self, now: float, events: list[WorkerEvent]) -> Feedback:
        ok, throttled = self.limiter.totals()
        latencies = sorted(ms for e in events for ms in e.latencies_ms)
        return Feedback(
            # The pacer's time is the run's time on the move: a pause (a Retry-After, the
            # partner's quota) served nothing, and must not lower what was served per second.
            now=now - self.limiter.paused_total(),
            ok_total=ok,
            throttled_total=throttled,
            answers_total=self.limiter.answers(),
            # Rows that had not failed yet: users the API always fails are not an overload.
            answered=sum(e.figures.fresh_requests for e in events),
            overloaded=sum(e.figures.fresh_overloads for e in events),
            median_ms=latencies[len(latencies) // 2] if latencies else None,
            # Every slot on the wire (not waiting for its turn here): the requests are
            # queueing at the API.
            saturated=self.limiter.on_the_wire() >= self.config.processing.max_workers,
            quota_rate=self.limiter.quota_rate(),
        )

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
            window=self.window_text,
        )
