"""retry.py: classification, backoff schedule and Retry-After parsing, without a clock."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from pipeline.traffic.retry import (
    AUTH,
    PERMANENT,
    SUCCESS,
    TRANSIENT,
    RetryPolicy,
    classify_status,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, SUCCESS),
        (400, PERMANENT),
        (401, AUTH),
        (403, PERMANENT),
        (404, PERMANENT),
        (408, TRANSIENT),
        (422, PERMANENT),
        (429, TRANSIENT),
        (500, TRANSIENT),
        (502, TRANSIENT),
        (503, TRANSIENT),
        (504, TRANSIENT),
    ],
)
def test_classification_follows_the_contract(status: int, kind: str) -> None:
    assert classify_status(status) == kind


def test_backoff_ceiling_doubles_up_to_the_max() -> None:
    policy = RetryPolicy(backoff_initial=0.5, backoff_max=3.0)

    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    top = Top()
    assert [policy.backoff(n, top) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_is_full_jitter_within_the_ceiling() -> None:
    policy = RetryPolicy(backoff_initial=1.0, backoff_max=60.0)
    rng = random.Random(7)
    waits = [policy.backoff(3, rng) for _ in range(500)]
    assert all(0.0 <= w <= 4.0 for w in waits)
    assert min(waits) < 0.5 and max(waits) > 3.5  # spread over the whole range


def test_attempts_bound() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.should_retry(n) for n in (1, 2, 3)] == [True, True, False]


def test_retry_after_wins_and_is_capped() -> None:
    policy = RetryPolicy(retry_after_max=30.0)
    rng = random.Random(1)
    assert policy.wait_after(1, 12.0, rng) == 12.0
    assert policy.wait_after(1, 900.0, rng) == 30.0
    assert 0.0 <= policy.wait_after(1, None, rng) <= 0.5


def test_parse_retry_after_both_forms() -> None:
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 0 ", now) == 0.0
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:42 GMT", now) == 42.0
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now) == 0.0  # in the past
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("-5", now) is None
