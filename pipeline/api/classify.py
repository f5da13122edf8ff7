"""What an HTTP answer means for a call: its outcome, its error kind, its `Retry-After`, and
the partner's quota when it states one (`RateLimit-*` / `X-RateLimit-*` headers).

Pure functions of the status code and headers; the client raises from them, the limiter and
the breaker hear the outcome, the retry policy decides on it.

Classification: timeouts, connection errors, 408, 429, 5xx and an unusable 200 body are
transient and retried; 401 means "refresh the token"; any other 4xx is permanent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from enum import Enum

from pipeline.errors import AuthError, CallError, ErrorKind, PermanentError


class Outcome(Enum):
    """How a call went, for the retry policy and the breaker: the one set of outcome names."""

    SUCCESS = "success"
    TRANSIENT = "transient"
    """Worth retrying, and a sign the API is unwell: a timeout, a connection error, 408, 5xx,
    an unusable 200 body. The breaker counts these."""
    THROTTLED = "throttled"
    """429: retried after the server's `Retry-After`; says nothing of the API's health."""
    AUTH = "auth"
    """401: refresh the partner token and call again."""
    PERMANENT = "permanent"
    """Any other 4xx: not retried."""


def classify_status(status: int) -> Outcome:
    """What an HTTP status means for the call."""
    if 200 <= status < 300:
        return Outcome.SUCCESS
    if status == 401:
        return Outcome.AUTH
    if status == 429:
        return Outcome.THROTTLED
    if status == 408 or status >= 500:
        return Outcome.TRANSIENT
    return Outcome.PERMANENT


def status_kind(status: int) -> ErrorKind:
    """The error kind of a call answered with a non-2xx HTTP `status`."""
    if status == 429:
        return ErrorKind.HTTP_429
    if status >= 500:
        return ErrorKind.HTTP_5XX
    return ErrorKind.HTTP_4XX


def outcome_of(error: CallError) -> Outcome:
    """The outcome of a call that raised `error`."""
    if isinstance(error, AuthError):
        return Outcome.AUTH
    if isinstance(error, PermanentError):
        return Outcome.PERMANENT
    return Outcome.THROTTLED if error.kind is ErrorKind.HTTP_429 else Outcome.TRANSIENT


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date.

    None when absent or unreadable; never negative. `now` (UTC) is injectable for tests.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return max(0.0, (when - current).total_seconds())


EPOCH_THRESHOLD = 1e9
"""A `Reset` value larger than this is a Unix time, not seconds from now (2001 onwards)."""
_QUOTA_HEADERS = tuple(
    (f"{prefix}-Limit", f"{prefix}-Remaining", f"{prefix}-Reset")
    for prefix in ("RateLimit", "X-RateLimit")
)


@dataclass(frozen=True)
class Quota:
    """A partner's quota as one answer stated it."""

    limit: int
    remaining: int
    reset_s: float
    """Seconds from the answer until the whole quota is back."""


def parse_quota(headers: Mapping[str, str], now_epoch: float) -> Quota | None:
    """The quota from an answer's headers (case-insensitive mapping), or None when they are
    absent or unreadable. `now_epoch`: the wall clock, for a Reset given as a Unix time."""
    for names in _QUOTA_HEADERS:
        first = headers.get(names[0])
        if first is None:  # most partners send none: one look-up per spelling
            continue
        raw = [first, headers.get(names[1]), headers.get(names[2])]
        if any(value is None for value in raw):
            continue
        try:
            limit = int(float(str(raw[0]).split(",")[0].split(";")[0]))
            remaining = int(float(str(raw[1])))
            reset = float(str(raw[2]))
        except ValueError:
            return None
        if not (limit > 0 and remaining >= 0 and math.isfinite(reset) and reset >= 0):
            return None
        if reset > EPOCH_THRESHOLD:
            reset = max(0.0, reset - now_epoch)
        return Quota(limit, remaining, reset)
    return None
