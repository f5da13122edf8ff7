"""progress.py: plain log lines with a fake clock."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from support import Clock

from pipeline.view.progress import (
    Counts,
    LogProgress,
    RateWindow,
    RunSnapshot,
    WorkerEvent,
    format_duration,
)


def test_log_lines_at_most_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logger = logging.getLogger("test.progress")
    progress = LogProgress(logger, interval=5.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        progress.start(total=1000, done=200)
        for _ in range(10):  # 1 s steps, 20 users each
            clock.now += 1.0
            progress.event(
                WorkerEvent(
                    1, "shard-00000.parquet", "working", 0, 0, Counts(Counter(ok=18, failed=2))
                )
            )
            progress.tick(RunSnapshot())
        progress.finish()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3  # at 5 s, at 10 s, and the final line
    assert lines[0].startswith("Progress: 300/1000 users processed (30.0%) - 20.0 users/s")
    assert "ETA 35.0s" in lines[0]
    assert lines[-1].startswith("Progress: 400/1000 users processed (40.0%)")
    assert "ok 180, failed 20" in lines[-1]


def test_rate_window_forgets_old_samples() -> None:
    window = RateWindow(span=10.0)
    window.add(0.0, 0)
    window.add(5.0, 500)  # fast start
    for t in range(6, 40):
        window.add(float(t), 500 + (t - 5) * 10)  # then 10/s
    assert window.rate() == pytest.approx(10.0)


@pytest.mark.parametrize(("seconds", "text"), [(3.24, "3.2s"), (123, "2m03s"), (3723, "1h02m03s")])
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
