"""The server's mutable state: stats, partner tokens, scripted rules (the rate limit: gateway.py).

Handlers run in many threads, so each of these holds a lock around every access; time comes
from the injected clock.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pipeline.mockapi.settings import Rule

_MAX_ARRIVALS = 1_000_000  # arrival times kept for stats; about 8 MB at most


class _Stats:
    """Request counts; handlers run in many threads, so every access holds the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._by_path: dict[str, int] = {}
            self._by_status: dict[str, int] = {}
            self._calculate = 0
            self._arrivals: deque[float] = deque(maxlen=_MAX_ARRIVALS)
            self._throttled: deque[float] = deque(maxlen=_MAX_ARRIVALS)

    def arrival(self, at: float) -> None:
        """Count a calculate request that arrived at `at` (clock seconds)."""
        with self._lock:
            self._calculate += 1
            self._arrivals.append(at)

    def throttled(self, at: float) -> None:
        """A calculate request that arrived at `at` was answered 429."""
        with self._lock:
            self._throttled.append(at)

    def answered(self, path: str, status: int) -> None:
        with self._lock:
            self._requests += 1
            self._by_path[path] = self._by_path.get(path, 0) + 1
            self._by_status[str(status)] = self._by_status.get(str(status), 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self._requests,
                "by_path": dict(self._by_path),
                "by_status": dict(self._by_status),
                "calculate": self._calculate,
                "arrivals": list(self._arrivals),
                "throttled": list(self._throttled),
                "process_cpu_s": time.process_time(),
            }


class _Tokens:
    """Partner tokens: opaque strings, live for `ttl_s` seconds of the injected clock."""

    def __init__(self, ttl_s: float, clock: Callable[[], float]) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> dict[str, str]:
        """A new token, as the `data` of the `/partner/token` answer."""
        token = "mock." + secrets.token_urlsafe(24)
        now = self._clock()
        expires_at = datetime.now(timezone.utc) + timedelta(seconds=self._ttl_s)
        with self._lock:
            self._expiry = {t: at for t, at in self._expiry.items() if at > now}
            self._expiry[token] = now + self._ttl_s
        return {"jwttoken": token, "expiresAt": expires_at.strftime("%Y-%m-%dT%H:%M:%SZ")}

    def is_live(self, token: str | None) -> bool:
        with self._lock:
            expiry = self._expiry.get(token or "")
        return expiry is not None and self._clock() < expiry

    def expire_all(self) -> None:
        with self._lock:
            self._expiry.clear()


@dataclass
class _ArmedRule:
    rule: Rule
    left: int | None
    """Answers this rule may still give; None = forever."""


class _RuleBook:
    """Scripted rules in the order added, with how many answers each has left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_ArmedRule] = []

    def add(self, rule: Rule) -> None:
        with self._lock:
            self._armed.append(_ArmedRule(rule, rule.times))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def take(self, body: object) -> Rule | None:
        """The first live rule that matches `body`, using up one of its answers; else None."""
        with self._lock:
            for armed in self._armed:
                if armed.left != 0 and armed.rule.matches(body):
                    if armed.left is not None:
                        armed.left -= 1
                    return armed.rule
        return None
