"""retry.py: attempts, the backoff schedule and the Retry-After cap, without a clock."""

from __future__ import annotations

import random

from pipeline.traffic.retry import RetryPolicy


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
