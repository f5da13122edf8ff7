"""schedule.py: which retry is due when, on a fake clock."""

from __future__ import annotations

import pytest
from support import Clock

from pipeline.run.schedule import RetrySchedule


def row(n: int) -> dict[str, int]:
    return {"_row": n}


def test_rows_come_back_when_due_earliest_first() -> None:
    clock = Clock()
    schedule = RetrySchedule(clock)
    schedule.add(row(1), 1, 2.0)
    schedule.add(row(2), 3, 0.5)
    schedule.add(row(3), 2, 1.0)
    assert schedule.pop_due() == []
    assert len(schedule) == 3
    clock.now += 1.0
    assert schedule.pop_due() == [(row(2), 3), (row(3), 2)]
    clock.now += 1.0
    assert schedule.pop_due() == [(row(1), 1)]
    assert not schedule


def test_rows_due_together_go_by_row_number() -> None:
    schedule = RetrySchedule(Clock())
    for n in (7, 3, 5):
        schedule.add(row(n), 1, 0.0)
    assert [r["_row"] for r, _ in schedule.pop_due()] == [3, 5, 7]


def test_wait_time_is_until_the_next_due_row_capped() -> None:
    clock = Clock()
    schedule = RetrySchedule(clock)
    assert schedule.wait_time(0.5) == 0.5  # nothing scheduled: the longest wait
    schedule.add(row(1), 1, 0.2)
    assert schedule.wait_time(0.5) == pytest.approx(0.2)
    schedule.add(row(2), 1, 5.0)
    clock.now += 0.3
    assert schedule.wait_time(0.5) == 0.0  # overdue: never negative
    schedule.pop_due()
    assert schedule.wait_time(0.5) == 0.5  # the next is far: capped
