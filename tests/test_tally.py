"""tally.py: a shard's events carry deltas, its report this invocation's totals."""

from __future__ import annotations

from support import Clock

from pipeline import schema
from pipeline.run.tally import BACKING_OFF, PAUSED, WORKING, ShardTally, shard_state


def test_events_carry_what_happened_since_the_last_one() -> None:
    clock = Clock()
    tally = ShardTally("shard-00001", shard_rows=10, clock=clock)
    tally.this_run_rows = 4
    for _ in range(3):
        tally.request()
    tally.error("http_5xx")
    tally.retry()
    tally.answered(12.5)
    tally.finished(schema.OK)
    tally.copied()
    tally.finished(schema.OK)
    assert not tally.timer.due(clock.now)
    clock.now += 0.5
    assert tally.timer.due(clock.now)
    event = tally.take_event(WORKING, rows_done=7)
    assert (event.shard, event.state, event.shard_rows_done, event.shard_rows) == (
        "shard-00001",
        WORKING,
        7,
        10,
    )
    figures = event.figures
    assert figures.states == {schema.OK: 2}
    assert (figures.requests, figures.retries, figures.deduped) == (3, 1, 1)
    assert figures.errors == {"http_5xx": 1}
    assert event.latencies_ms == (12.5,)
    assert not tally.timer.due(clock.now)  # the next event's time starts now

    tally.request()
    tally.finished(schema.FAILED)
    second = tally.take_event(WORKING, rows_done=8)
    assert (second.figures.requests, second.figures.states) == (1, {schema.FAILED: 1})
    assert second.latencies_ms == ()
    # The invocation's totals add up every event's.
    assert tally.this_run_requests == 4
    assert tally.this_run_counts == {schema.OK: 2, schema.FAILED: 1}
    assert tally.recovered == 2


def test_overloads_are_counted_for_rows_that_had_not_failed_yet() -> None:
    tally = ShardTally("shard-00001", shard_rows=10, clock=Clock())
    tally.request()
    tally.error("http_5xx")  # a row's first failure: the API may be struggling
    tally.request()
    tally.error("timeout")
    tally.request()
    tally.error("http_429")  # the partner's limit, not an overload
    for _ in range(5):  # the same row again and again: a user the API always fails
        tally.request(fresh=False)
        tally.error("http_5xx", fresh=False)
    figures = tally.take_event(WORKING, rows_done=0).figures
    assert (figures.requests, figures.errors["http_5xx"]) == (8, 6)
    assert (figures.fresh_requests, figures.fresh_overloads) == (3, 2)


def test_shard_state() -> None:
    assert shard_state(ready=0, in_flight=0, scheduled=3, paused=False) == BACKING_OFF
    assert shard_state(ready=1, in_flight=0, scheduled=3, paused=False) == WORKING
    assert shard_state(ready=0, in_flight=2, scheduled=3, paused=False) == WORKING
    assert shard_state(ready=0, in_flight=0, scheduled=0, paused=False) == WORKING
    assert shard_state(ready=5, in_flight=2, scheduled=0, paused=True) == PAUSED
