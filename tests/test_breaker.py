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
