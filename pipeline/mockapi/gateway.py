"""The mock's rate limit, enforced the ways real API gateways do, and what it tells the client.

Kinds (`MockSettings.limit_kind`):

- `sliding`: at most floor(rate x window) requests admitted in any `window`-second span (a
  sliding log). Below 1 request/s the span grows to hold one request.
- `fixed`: at most round(rate x window) requests per fixed window of `window` seconds,
  counted from the first request (NGINX-style counters, cloud API managers' quotas).
- `token-bucket`: a bucket of `burst` tokens refilled at `rate` per second; each request
  takes one (API gateways, `limit_req ... burst=`). `burst` 0 = a quarter second of rate.

Refused requests do not use quota, so a client that keeps knocking still gets through once
it slows down. `Schedule` changes the rate during a run ("80 req/s, 30 from 20 s, 80 again
from 40 s"), counted from the first request after a start or a stats reset.

Each decision is a `Verdict`: admitted or not, the wait until it would be, and the quota as
the IETF RateLimit headers state it (limit per window, remaining, seconds until the whole
quota is back). `limit_headers` and `retry_after_header` turn it into response headers.
Time is the caller's clock (monotonic seconds); every gateway locks around its state.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

SLIDING = "sliding"
FIXED = "fixed"
TOKEN_BUCKET = "token-bucket"
KINDS = (SLIDING, FIXED, TOKEN_BUCKET)
BURST_SECONDS = 0.25
"""The default token bucket holds this many seconds of the rate."""


@dataclass(frozen=True)
class Verdict:
    wait_s: float
    """0.0 when admitted, else the seconds until a request would be."""
    limit: int
    """Requests allowed per window (per second for the token bucket)."""
    remaining: int
    """Requests that could still be admitted now, this one counted."""
    reset_s: float
    """Seconds until the whole quota is available again."""

    @property
    def admitted(self) -> bool:
        return self.wait_s <= 0.0


class Gateway:
    """One of the kinds above; `admit(now)` decides, `set_rate` follows a schedule."""

    def __init__(self, rate: float, window_s: float = 1.0, burst: int = 0) -> None:
        if not rate > 0:
            raise ValueError(f"rate ({rate!r}) must be > 0 requests/s")
        self._lock = threading.Lock()
        self.window_s = window_s
        self.burst = burst
        self.rate = rate
        self._fresh()
        self._configure(rate)

    def set_rate(self, rate: float) -> None:
        with self._lock:
            self.rate = rate
            self._configure(rate)

    def admit(self, now: float) -> Verdict:
        with self._lock:
            return self._admit(now)

    def _fresh(self) -> None:
        """The state of a gateway that has seen no request."""
        raise NotImplementedError

    def _configure(self, rate: float) -> None:
        """Derive the limits from `rate` (at the start and at each scheduled change)."""
        raise NotImplementedError

    def _admit(self, now: float) -> Verdict:
        raise NotImplementedError


class SlidingWindow(Gateway):
    """At most `limit` admitted requests in any span of `span_s` seconds."""

    def _fresh(self) -> None:
        self._admitted: deque[float] = deque()

    def _configure(self, rate: float) -> None:
        self.span_s = max(self.window_s, 1.0 / rate)
        self.limit = max(1, math.floor(rate * self.span_s + 1e-9))

    def _admit(self, now: float) -> Verdict:
        admitted = self._admitted
        while admitted and admitted[0] <= now - self.span_s:
            admitted.popleft()
        wait = 0.0
        if len(admitted) < self.limit:
            admitted.append(now)
        else:
            wait = admitted[0] + self.span_s - now
        reset = admitted[-1] + self.span_s - now if admitted else 0.0
        return Verdict(wait, self.limit, self.limit - len(admitted), reset)


class FixedWindow(Gateway):
    """At most `limit` requests per window of `window_s` seconds, from the first request."""

    def _fresh(self) -> None:
        self._start: float | None = None
        self._window_start = -math.inf
        self._count = 0

    def _configure(self, rate: float) -> None:
        self.limit = max(1, round(rate * self.window_s))

    def _admit(self, now: float) -> Verdict:
        if self._start is None:
            self._start = now
        index = math.floor((now - self._start) / self.window_s)
        window_start = self._start + index * self.window_s
        if window_start > self._window_start:
            self._window_start, self._count = window_start, 0
        end = window_start + self.window_s
        wait = 0.0
        if self._count < self.limit:
            self._count += 1
        else:
            wait = end - now
        return Verdict(wait, self.limit, self.limit - self._count, end - now)


class TokenBucket(Gateway):
    """`capacity` tokens, refilled at `rate` per second; one per request."""

    def _fresh(self) -> None:
        self._tokens = math.inf  # a new bucket is full, whatever its capacity
        self._last: float | None = None

    def _configure(self, rate: float) -> None:
        self.capacity = float(self.burst or max(1, round(rate * BURST_SECONDS)))
        self._tokens = min(self._tokens, self.capacity)

    def _admit(self, now: float) -> Verdict:
        if self._last is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        wait = 0.0
        if self._tokens >= 1.0:
            self._tokens -= 1.0
        else:
            wait = (1.0 - self._tokens) / self.rate
        reset = (self.capacity - self._tokens) / self.rate
        return Verdict(wait, max(1, round(self.rate)), math.floor(self._tokens), reset)


def make_gateway(kind: str, rate: float, window_s: float = 1.0, burst: int = 0) -> Gateway:
    """The gateway of `kind` (one of KINDS) at `rate` requests/s."""
    classes: dict[str, type[Gateway]] = {
        SLIDING: SlidingWindow,
        FIXED: FixedWindow,
        TOKEN_BUCKET: TokenBucket,
    }
    if kind not in classes:
        raise ValueError(f"limit kind {kind!r} must be one of {', '.join(KINDS)}")
    return classes[kind](rate, window_s, burst)


class Schedule:
    """The rate in force `elapsed` seconds after the first request: the base rate, then each
    change in turn. Parsed from "20:30,40:80" (at 20 s 30 requests/s, at 40 s 80)."""

    def __init__(self, base: float, changes: tuple[tuple[float, float], ...]) -> None:
        self.base = base
        self.changes = tuple(sorted(changes))

    def rate_at(self, elapsed: float) -> float:
        rate = self.base
        for at, value in self.changes:
            if elapsed >= at:
                rate = value
        return rate


def parse_schedule(text: str) -> tuple[tuple[float, float], ...]:
    """ "20:30,40:80" -> ((20.0, 30.0), (40.0, 80.0)); "" -> (). Raises ValueError naming
    the part that is not `seconds:rate` with both numbers >= 0 and the rate > 0."""
    changes: list[tuple[float, float]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        at, sep, rate = part.partition(":")
        try:
            pair = (float(at), float(rate))
        except ValueError:
            pair = (-1.0, 0.0)
        if not sep or not (math.isfinite(pair[0]) and pair[0] >= 0 and 0 < pair[1] < math.inf):
            raise ValueError(f"{part!r} must be SECONDS:RATE, e.g. 20:30 (rate > 0)")
        changes.append(pair)
    return tuple(changes)


def retry_after_header(wait_s: float) -> str:
    """`Retry-After` for a wait of `wait_s` seconds: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_s)))


def retry_after_date(wait_s: float, now: datetime | None = None) -> str:
    """`Retry-After` as an HTTP date, `wait_s` from `now` (UTC), rounded up to a second."""
    current = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    return format_datetime(current + timedelta(seconds=max(1, math.ceil(wait_s)) + 1), usegmt=True)


def limit_headers(verdict: Verdict, prefix: str) -> dict[str, str]:
    """`{prefix}-Limit`, `-Remaining`, `-Reset` (whole seconds, rounded up), e.g. prefix
    "RateLimit" (IETF) or "X-RateLimit" (the common older spelling)."""
    return {
        f"{prefix}-Limit": str(verdict.limit),
        f"{prefix}-Remaining": str(max(0, verdict.remaining)),
        f"{prefix}-Reset": str(max(0, math.ceil(verdict.reset_s - 1e-9))),
    }
