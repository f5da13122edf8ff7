"""breaker.py: the pure policy, step by step with given numbers (the pacer: test_pacing.py)."""

from __future__ import annotations

from pipeline.traffic.breaker import PROBE, SEND, WAIT, BreakerPolicy, BreakerState


def test_breaker_state_machine() -> None:
    policy = BreakerPolicy(threshold=3, first_probe=1.0, max_probe=4.0)
    s = BreakerState()
    s = policy.failure(s, 10.0, probe=False)
    s = policy.success(s)
    for _ in range(2):
        s = policy.failure(s, 10.0, probe=False)
    assert not s.is_open and policy.admit(s, 10.0)[1] == SEND
    s = policy.failure(s, 10.0, probe=False)
    assert s.is_open
    assert policy.admit(s, 10.5) == (s, WAIT, 11.0)
    s, verdict, _ = policy.admit(s, 11.0)
    assert verdict == PROBE
    assert policy.admit(s, 11.1)[1] == WAIT  # one probe at a time
    s = policy.failure(s, 11.2, probe=False)  # a straggler changes nothing
    s = policy.failure(s, 11.5, probe=True)
    assert (s.probe_at, s.interval) == (13.5, 2.0)
    s, _, _ = policy.admit(s, 13.5)
    s = policy.failure(s, 14.0, probe=True)
    s, _, _ = policy.admit(s, 18.0)
    s = policy.failure(s, 18.0, probe=True)
    assert s.interval == 4.0  # capped at max_probe
    assert policy.outage_seconds(s, 20.0) == 10.0
    assert policy.success(s) == BreakerState()


def test_only_rows_that_have_not_failed_yet_open_it() -> None:
    """A tail of rows that keep failing while the API answers the others: their repeated
    failures neither open the breaker nor reset the fresh rows' count."""
    policy = BreakerPolicy(threshold=3)
    s = policy.failure(BreakerState(), 10.0, probe=False)
    for _ in range(20):
        s = policy.failure(s, 10.0, probe=False, fresh=False)
    assert not s.is_open and s.consecutive == 1
    for _ in range(2):
        s = policy.failure(s, 11.0, probe=False)
    assert s.is_open and s.open_since == 11.0


def test_a_fresh_row_waiting_gets_the_probe() -> None:
    policy = BreakerPolicy(threshold=1, first_probe=1.0)
    s = policy.failure(BreakerState(), 10.0, probe=False)
    assert policy.admit(s, 11.0, fresh=False, fresh_waiting=1) == (s, WAIT, 11.25)
    s, verdict, _ = policy.admit(s, 11.0, fresh=True, fresh_waiting=1)
    assert verdict == PROBE


def test_a_fresh_probe_that_fails_is_an_outage_and_burns_nothing() -> None:
    policy = BreakerPolicy(threshold=1, first_probe=1.0, max_probe=60.0)
    s = policy.failure(BreakerState(), 10.0, probe=False)
    s = policy.failure(s, 10.5, probe=False, fresh=False)  # a straggler says nothing
    for now in (11.0, 13.0, 17.0):
        s, verdict, _ = policy.admit(s, now, fresh=True)
        assert verdict == PROBE
        s = policy.failure(s, now, probe=True, fresh=True)
        assert s.is_open and s.open_since == 10.0  # still the same outage
    assert (s.probe_at, s.interval) == (25.0, 8.0)


def test_with_no_fresh_row_left_a_failed_probe_is_the_rows_own() -> None:
    """Every row left has failed before (the tail, or a resumed run or rerun-failed with only
    them): the probe's failure closes the breaker, so the rows use up their attempts."""
    policy = BreakerPolicy(threshold=1, first_probe=1.0)
    s = policy.failure(BreakerState(), 10.0, probe=False)
    s, verdict, _ = policy.admit(s, 11.0, fresh=False, fresh_waiting=0)
    assert verdict == PROBE and s.probing
    s = policy.failure(s, 11.1, probe=True, fresh=False)
    assert s == BreakerState()
    assert policy.admit(s, 11.1, fresh=False) == (s, SEND, 0.0)
