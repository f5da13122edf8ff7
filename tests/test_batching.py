"""batching.py and timers.py: when a checkpoint batch is written, on a fake clock."""

from __future__ import annotations

from support import Clock

from pipeline.run.batching import CheckpointBatch
from pipeline.run.timers import Every


def test_a_full_batch_is_due_at_once() -> None:
    clock = Clock()
    batch = CheckpointBatch(rows=3, seconds=1.0, clock=clock)
    batch.add({"_row": 1})
    batch.add({"_row": 2})
    assert not batch.due(clock.now)
    assert not batch.just_filled
    batch.add({"_row": 3})
    assert batch.just_filled
    assert batch.due(clock.now)
    batch.add({"_row": 4})
    assert not batch.just_filled  # the writer is woken once per batch
    assert [o["_row"] for o in batch.take()] == [1, 2, 3, 4]
    assert not batch.due(clock.now + 10)  # empty: nothing to write however long it waits


def test_a_partial_batch_is_due_after_its_time() -> None:
    clock = Clock()
    batch = CheckpointBatch(rows=50, seconds=1.0, clock=clock)
    batch.add({"_row": 1})
    clock.now += 0.9
    assert not batch.due(clock.now)
    clock.now += 0.1
    assert batch.due(clock.now)
    batch.take()
    batch.add({"_row": 2})
    assert not batch.due(clock.now + 0.9)  # the next batch's time starts at the take
    assert batch.due(clock.now + 1.0)


def test_every_is_due_after_its_interval_or_at_once() -> None:
    clock = Clock()
    every = Every(0.25, clock)
    assert not every.due(clock.now)
    assert every.due(clock.now + 0.25)
    every.reset(clock.now + 0.25)
    assert not every.due(clock.now + 0.3)
    assert Every(0.25, clock, at_once=True).due(clock.now)
