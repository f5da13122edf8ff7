"""Circuit breaker: when the API is down, stop sending and probe until it comes back.

A pure state machine over `BreakerState` (plain numbers, so the limiter can keep it in shared
memory for every process). Time comes in as `now`.

- Closed: every request may go. `threshold` consecutive transient failures (timeouts,
  connection errors, 5xx; not 429, which the adaptive rate handles) of *fresh* rows open it.
- Open: nothing goes, except one probe at a time, first `first_probe` seconds after opening,
  then at doubling intervals up to `max_probe`. A successful answer closes it; a failed
  probe schedules the next one. The coordinator gives up when it has been open for longer
  than `[retry] give_up_after` (exit code 3, state saved).

While it is open, a transient failure does not use up a row's attempts: rows are not burned
into `failed` by an outage.

Only fresh rows (rows that have not failed yet in this run) can show an outage. A row that
fails again and again while the API answers everyone else (the partner breaks on that user's
data, every time) must end `failed` after its `max_attempts`, not hold the run until
`give_up_after` and exit 3 with the row still pending, as every rerun would again. So:

- Closed: the failure of a row that has failed before neither counts towards `threshold` nor
  resets the count. A tail of such rows, once the others are done, never opens it: they run
  out their attempts at their usual backoff.
- Open: a fresh row waiting for the probe gets it before a row that has failed before. When
  no fresh row waits (every row left has failed already: a tail of such rows, or a resumed run
  with only those left), the probe is a row that has failed before, and its failure is that
  row's own: it closes the breaker, and uses up the row's attempt as any failure does then.

A real outage (everything fails, fresh rows included) still opens it, its probes are fresh
rows, and no row is burned. An outage at the very end of a run, when only rows that have
failed before are left, cannot be told from such rows: they end `failed` (exit 1), and
`rerun-failed` asks them again.
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

    def admit(
        self, s: BreakerState, now: float, *, fresh: bool = True, fresh_waiting: int = 0
    ) -> tuple[BreakerState, str, float]:
        """(new state, SEND | PROBE | WAIT, until when to wait). `fresh`: the request is for a
        row that has not failed yet in this run; `fresh_waiting`: how many such requests wait
        for the breaker now, in all processes."""
        if not s.is_open:
            return s, SEND, 0.0
        if s.probing or now < s.probe_at:
            # Someone else is probing: look again soon; else wait for the probe time.
            until = now + 0.25 if s.probing else s.probe_at
            return s, WAIT, until
        if not fresh and fresh_waiting > 0:
            return s, WAIT, now + 0.25  # a fresh row's probe tells an outage from a bad row
        return replace(s, probing=True), PROBE, 0.0

    def success(self, s: BreakerState) -> BreakerState:
        return BreakerState()

    def failure(
        self, s: BreakerState, now: float, *, probe: bool, fresh: bool = True
    ) -> BreakerState:
        """After a transient failure; `fresh`: of a row that had not failed before."""
        if s.is_open:
            if not probe:
                return s  # a straggler that was in flight when it opened
            if not fresh:
                return BreakerState()  # no fresh row left to ask: the row's own failure
            interval = min(self.max_probe, s.interval * 2)
            return replace(s, probing=False, interval=interval, probe_at=now + interval)
        if not fresh:
            return s  # says nothing of the API: others may well be answered
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
