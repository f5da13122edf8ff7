"""What the mock is told to do: `MockSettings` (plain, picklable data) and scripted `Rule`s.

Faults are scripted (`Rule`), seeded (`error_rate`, jitter) or driven by the injected clock
(`rate_limit`, token expiry), so tests stay deterministic. Both classes validate themselves on
construction, with messages that name the setting, the value and the rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.mockapi.gateway import KINDS, parse_schedule

MAX_CARDS = 100


@dataclass(frozen=True)
class MockSettings:
    """How the mock behaves. Plain data, so it pickles into a mock process."""

    latency_ms: float = 150.0
    """Mean time a calculate request waits before its answer, in milliseconds."""
    jitter_ms: float = 50.0
    """Uniform spread around `latency_ms`, +- milliseconds; a wait never goes below 0."""
    error_rate: float = 0.0
    """Share (0..1) of calculate requests answered 500, drawn from an RNG seeded by `seed`."""
    fail_share: float = 0.0
    """Share (0..1) of users answered 500 every time: a request whose body hashes (with `seed`)
    below it, as a partner that breaks on some users' data while it answers everyone else."""
    rate_limit: float = 0.0
    """Calculate requests per second above which the mock answers 429; 0 = no limit."""
    limit_kind: str = "sliding"
    """How the rate is enforced: "sliding", "fixed" or "token-bucket" (gateway.py)."""
    limit_window_s: float = 1.0
    """Window of the "sliding" and "fixed" kinds, in seconds (e.g. 1, 10, 60)."""
    limit_burst: int = 0
    """Token bucket size in requests; 0 = a quarter second of the rate."""
    retry_after: str = "seconds"
    """`Retry-After` on a 429: "seconds", "date" (an HTTP date) or "none" (no header)."""
    limit_headers: str = "none"
    """Quota headers on every calculate answer: "none", "ietf" (RateLimit-Limit, -Remaining,
    -Reset) or "x" (X-RateLimit-*)."""
    rate_schedule: str = ""
    """Changes of `rate_limit` during a run, "SECONDS:RATE,...", counted from the first
    request, e.g. "20:30,40:80"; "" = none."""
    cards: int = 15
    """Catalogue size, 1..100; 15 gives ~35 KB responses, 100 gives ~1 MB."""
    seed: int = 0
    """Seeds the catalogue, the latency jitter and the error draws."""
    api_key: str = "mock-key"
    """The key that `/partner/token` accepts."""
    token_ttl_s: float = 3600.0
    """How long an issued partner token stays live, in seconds."""
    hostile_names: bool = False
    """Give a few cards names that start with "=", "+", "-" or "@" (spreadsheet formulas)."""

    def __post_init__(self) -> None:
        _check_number("latency_ms", self.latency_ms, "must be a number >= 0")
        _check_number("jitter_ms", self.jitter_ms, "must be a number >= 0")
        _check_number("rate_limit", self.rate_limit, "must be a number >= 0 (0 = no limit)")
        _check_number("token_ttl_s", self.token_ttl_s, "must be a number > 0", positive=True)
        for name in ("error_rate", "fail_share"):
            _check_number(name, getattr(self, name), "must be between 0 and 1")
            if getattr(self, name) > 1:
                raise ValueError(
                    f"MockSettings.{name} ({getattr(self, name)!r}) must be between 0 and 1"
                )
        self._check_limit()
        if _not_int(self.cards) or not 1 <= self.cards <= MAX_CARDS:
            raise ValueError(f"MockSettings.cards ({self.cards!r}) must be an integer 1..100")
        if _not_int(self.seed):
            raise ValueError(f"MockSettings.seed ({self.seed!r}) must be an integer")
        if not isinstance(self.api_key, str) or not self.api_key:
            raise ValueError("MockSettings.api_key must be a non-empty string")

    def _check_limit(self) -> None:
        _check_number("limit_window_s", self.limit_window_s, "must be a number > 0", positive=True)
        if _not_int(self.limit_burst) or self.limit_burst < 0:
            raise ValueError(
                f"MockSettings.limit_burst ({self.limit_burst!r}) must be an integer >= 0"
            )
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"MockSettings.{name} ({getattr(self, name)!r}) must be one of "
                    + ", ".join(allowed)
                )
        try:
            parse_schedule(self.rate_schedule)
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"MockSettings.rate_schedule: {exc}") from None
        if self.rate_schedule and not self.rate_limit > 0:
            raise ValueError("MockSettings.rate_schedule needs a rate_limit > 0 to start from")


_CHOICES = {
    "limit_kind": KINDS,
    "retry_after": ("seconds", "date", "none"),
    "limit_headers": ("none", "ietf", "x"),
}


def _not_int(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int)


def _check_number(name: str, value: object, rule: str, *, positive: bool = False) -> None:
    ok = (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and (value > 0 if positive else value >= 0)
    )
    if not ok:
        raise ValueError(f"MockSettings.{name} ({value!r}) {rule}")


@dataclass(frozen=True)
class Rule:
    """A scripted answer, checked (in the order added) before the normal one.

    Applies to a calculate request whose JSON body holds every key/value of `match` (empty
    `match` = every calculate request). It answers `times` matching requests, then is used up
    (None = forever): "fail the first time, succeed the second" is `Rule({}, 503, html, times=1)`.
    """

    match: Mapping[str, float]
    status: int
    body: str
    """Raw body to send: JSON, an HTML page, anything."""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra headers, e.g. {"Retry-After": "2"} or a Content-Type (default: guessed JSON/HTML)."""
    times: int | None = None

    def __post_init__(self) -> None:
        if _not_int(self.status) or not 100 <= self.status <= 599:
            raise ValueError(f"Rule.status ({self.status!r}) must be an HTTP status 100..599")
        if self.times is not None and (_not_int(self.times) or self.times < 1):
            raise ValueError(f"Rule.times ({self.times!r}) must be None or an integer >= 1")

    def matches(self, body: object) -> bool:
        """True if this rule applies to a request with this parsed JSON body."""
        if not self.match:
            return True
        if not isinstance(body, dict):
            return False
        return all(key in body and body[key] == value for key, value in self.match.items())
