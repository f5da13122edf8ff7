"""Circuit breaker: when the API is down, stop sending and probe until it comes back.

A pure state machine over `BreakerState` (plain numbers, so the limiter can keep it in shared
memory for every process). Time comes in as `now`.

- Closed: every request may go. `threshold` consecutive transient failures (timeouts,
  connection errors, 5xx; not 429, which the adaptive rate handles) open it.
- Open: nothing goes, except one probe at a time, first `first_probe` seconds after opening,
  then at doubling intervals up to `max_probe`. A successful answer closes it; a failed
  probe schedules the next one. The coordinator gives up when it has been open for longer
  than `[retry] give_up_after` (exit code 3, state saved).

While it is open, a transient failure does not use up a row's attempts: rows are not burned
into `failed` by an outage.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

SEND = "send"
PROBE = "probe"
WAIT = "wait"


@dataclass(frozen=True)
class BreakerState:
    consecutive: int = 0
    """Transient failures in a row, all processes together."""
    open_since: float = 0.0
    """When it opened; 0 = closed."""
    probe_at: float = 0.0
    interval: float = 0.0
    probing: bool = False
    """A probe is in flight."""

    @property
    def is_open(self) -> bool:
        return self.open_since > 0


@dataclass(frozen=True)
class BreakerPolicy:
    threshold: int = 5
    first_probe: float = 1.0
    max_probe: float = 60.0

    def admit(self, s: BreakerState, now: float) -> tuple[BreakerState, str, float]:
        """(new state, SEND | PROBE | WAIT, until when to wait)."""
        if not s.is_open:
            return s, SEND, 0.0
        if s.probing or now < s.probe_at:
            # Someone else is probing: look again soon; else wait for the probe time.
            until = now + 0.25 if s.probing else s.probe_at
            return s, WAIT, until
        return replace(s, probing=True), PROBE, 0.0

    def success(self, s: BreakerState) -> BreakerState:
        return BreakerState()

    def failure(self, s: BreakerState, now: float, *, probe: bool) -> BreakerState:
        if s.is_open:
            if not probe:
                return s  # a straggler that was in flight when it opened
            interval = min(self.max_probe, s.interval * 2)
            return replace(s, probing=False, interval=interval, probe_at=now + interval)
        consecutive = s.consecutive + 1
        if consecutive >= self.threshold:
            return self.trip(s, now)
        return replace(s, consecutive=consecutive)

    def trip(self, s: BreakerState, now: float, first_probe: float | None = None) -> BreakerState:
        """Open now (also for a Retry-After longer than the longest one honoured)."""
        if s.is_open:
            return s
        wait = self.first_probe if first_probe is None else first_probe
        return BreakerState(
            consecutive=s.consecutive,
            open_since=now,
            probe_at=now + wait,
            interval=max(wait, self.first_probe),
        )

    def outage_seconds(self, s: BreakerState, now: float) -> float:
        return now - s.open_since if s.is_open else 0.0
