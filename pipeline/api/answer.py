"""One answer of the API, read: the cards of a 2xx, or the error any other status raises.

An unusable 2xx body (not JSON, NaN or Infinity in it, not the expected shape, or refused by
the caller's `check`) is a transient `bad_body` error, retried like a 5xx. An error's message
quotes the API's own `message` when its body has one, on one line: it may end up in the
one-line message of a refused run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipeline.api.cardgenius import cards_of
from pipeline.api.cards import BadBody
from pipeline.api.classify import Outcome, Quota, parse_retry_after, status_kind
from pipeline.errors import AuthError, CallError, ErrorKind, PermanentError, TransientError

Cards = list[Mapping[str, Any]]


@dataclass(frozen=True)
class Answer:
    cards: Cards
    http_status: int
    latency_ms: float
    quota: Quota | None = None
    """The partner's quota headers (RateLimit-* / X-RateLimit-*), when it sent them."""
    checked: Any = None
    """What the caller's `check` returned for the cards (a worker's: their ranking)."""


def read_cards(
    content: bytes, status: int, *, wrapped: bool, check: Callable[[Cards], Any] | None = None
) -> Cards:
    """The cards of a 2xx answer's body; `wrapped`: the partner gateway's envelope."""
    return read_checked(content, status, wrapped=wrapped, check=check)[0]


def read_checked(
    content: bytes, status: int, *, wrapped: bool, check: Callable[[Cards], Any] | None = None
) -> tuple[Cards, Any]:
    """`read_cards`, and what `check` returned for the cards (None without a check)."""
    try:
        cards = cards_of(_JSON.decode(content.decode("utf-8")), wrapped=wrapped)
        checked = check(cards) if check is not None else None
    except (ValueError, BadBody) as exc:
        reason = str(exc) if isinstance(exc, BadBody) else "answer is not JSON"
        message = f"bad body: {reason}"
        raise TransientError(message, kind=ErrorKind.BAD_BODY, http_status=status) from None
    return cards, checked


def _no_constants(name: str) -> None:
    raise BadBody(f"answer holds {name}, which is not JSON")


# NaN and Infinity are not JSON, though Python's decoder takes them by default.
_JSON = json.JSONDecoder(parse_constant=_no_constants)


def http_error(outcome: Outcome, status: int, retry_after: str | None, content: bytes) -> CallError:
    """The error a non-2xx answer raises, by its outcome (classify.py)."""
    message, kind = f"HTTP {status}{detail(content)}", status_kind(status)
    if outcome is Outcome.AUTH:
        return AuthError(message, kind=kind, http_status=status)
    if outcome is Outcome.PERMANENT:
        return PermanentError(message, kind=kind, http_status=status)
    wait = parse_retry_after(retry_after)
    return TransientError(message, kind=kind, http_status=status, retry_after=wait)


def detail(content: bytes) -> str:
    """The API's own message from an error body, if it has one (proxies send HTML)."""
    try:
        payload = json.loads(content)
    except ValueError:
        return ""
    if isinstance(payload, dict) and isinstance(payload.get("message"), str):
        # One line: it may end up quoted in the one-line message of a refused run.
        return f": {' '.join(payload['message'].split())[:200]}"
    return ""
