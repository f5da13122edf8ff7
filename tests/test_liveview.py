"""liveview.py: the live view and the run summary, drawn with a fake clock into StringIO."""

from __future__ import annotations

import io
import logging
import random
from collections import Counter

import pytest
from rich.console import Console
from support import Clock

from pipeline.view.liveview import (
    ConsoleLogHandler,
    LiveProgress,
    summary_facts,
    summary_table,
    top_cards_table,
)
from pipeline.view.progress import (
    Counts,
    LatencyHistogram,
    LogProgress,
    RunSnapshot,
    RunStats,
    WorkerEvent,
    percentile,
)

PIDS = (101, 102, 103, 104)
LIMITS = RunSnapshot(in_flight=18, max_workers=20, rate_limit=100.0, current_rate=80.0)


def console(width: int = 100, terminal: bool = False) -> Console:
    return Console(file=io.StringIO(), width=width, force_terminal=terminal, color_system=None)


def text_of(view: LiveProgress, width: int = 100) -> str:
    """One frame, as plain text."""
    out = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    out.print(view.render())
    return out.export_text()


def event(pid: int, step: int) -> WorkerEvent:
    """One worker's half second: 9 ok + 1 failed, 11 requests, one 429."""
    return WorkerEvent(
        pid=pid,
        shard=f"shard-{pid:05d}",
        state="working",
        shard_rows_done=10 * step,
        shard_rows=1000,
        figures=Counts(Counter(ok=9, failed=1), Counter(http_429=1), requests=11, retries=1),
        latencies_ms=tuple(float(ms) for ms in range(100, 110)),
    )


def drive(view: LiveProgress, clock: Clock, steps: int, snapshot: RunSnapshot = LIMITS) -> None:
    """`steps` half seconds of four workers at 20 users/s each."""
    for step in range(1, steps + 1):
        clock.now += 0.5
        for pid in PIDS:
            view.event(event(pid, step))
        view.tick(snapshot)


def test_frame_shows_progress_rates_outcomes_and_workers() -> None:
    clock = Clock()
    view = LiveProgress(console(), clock=clock)
    view.start(total=5000, done=1000)
    drive(view, clock, steps=20)  # 10 s at 80 users/s
    timeouts = Counts(errors=Counter(timeout=2))
    view.event(WorkerEvent(101, "shard-00101", "working", 200, 1000, figures=timeouts))
    text = text_of(view)
    view.finish()

    assert "36.0%" in text
    assert "1,800/5,000 users | elapsed 10.0s | ETA 40.0s" in text
    assert "users/s 80.0 now, 80.0 avg" in text
    assert "requests/s 88.0 of 100 limit (adaptive 80.0)" in text
    assert "in flight 18/20" in text
    assert "ok 720 | no_cards 0 | invalid 0 | failed 80 | retries 80 | deduped 0" in text
    assert "errors   429 80 | timeout 2" in text
    assert "latency  p50 104 ms | p95 109 ms | p99 109 ms (last 800)" in text
    for pid in PIDS:
        assert f"worker {pid} shard-{pid:05d} 200/1,000 working" in text
    assert "PAUSED" not in text


def test_adaptive_rate_shown_only_when_it_differs_from_the_limit() -> None:
    clock = Clock()
    view = LiveProgress(console(), clock=clock)
    view.start(total=100, done=0)
    view.tick(RunSnapshot(max_workers=4, rate_limit=10.0, current_rate=10.0))
    assert "of 10 limit |" in text_of(view)
    view.tick(RunSnapshot(max_workers=4))
    text = text_of(view)
    view.finish()
    assert "limit" not in text and "adaptive" not in text
    assert "errors   none" in text and "latency  -" in text


def test_pause_banner_with_reason_and_time_left() -> None:
    clock = Clock()
    view = LiveProgress(console(), clock=clock)
    view.start(total=1000, done=0)
    drive(view, clock, steps=2)
    view.tick(RunSnapshot(max_workers=20, paused_for=12.0, pause_reason="Retry-After"))
    paused = text_of(view)
    view.tick(RunSnapshot(max_workers=20))
    resumed = text_of(view)
    view.finish()
    assert "PAUSED (Retry-After): requests resume in 12.0s" in paused
    assert "PAUSED" not in resumed


def test_narrow_terminal_wraps_within_its_width() -> None:
    clock = Clock()
    live_console = console(width=40, terminal=True)
    view = LiveProgress(live_console, clock=clock)
    view.start(total=2_000_000, done=0)
    drive(view, clock, steps=4)
    view.tick(RunSnapshot(in_flight=200, max_workers=200, paused_for=95.0, pause_reason="outage"))
    text = text_of(view, width=40)
    view.finish()
    assert all(len(line) <= 40 for line in text.splitlines())
    assert "PAUSED (outage)" in text and "worker 104" in text
    assert "worker 104" in live_console.file.getvalue()  # type: ignore[attr-defined]


def test_draws_at_most_refresh_per_second_and_finish_is_idempotent() -> None:
    clock = Clock()
    out = console(terminal=True)
    view = LiveProgress(out, clock=clock, refresh_per_second=4)
    view.start(total=1000, done=0)
    for _ in range(32):  # 2 s of ticks every 62.5 ms (exact in binary)
        clock.now += 0.0625
        view.tick(LIMITS)
    assert view.frames == 1 + 8  # start, then every 0.25 s
    view.finish()
    view.finish()
    clock.now += 1.0
    view.tick(LIMITS)
    assert view.frames == 9
    assert not out.is_alt_screen
    assert out.file.getvalue().endswith("\x1b[?25h")  # type: ignore[attr-defined]  # cursor on


def test_interrupt_inside_the_context_still_stops_the_display() -> None:
    out = console(terminal=True)
    with pytest.raises(KeyboardInterrupt), LiveProgress(out, clock=Clock()) as view:
        view.start(total=10, done=0)
        raise KeyboardInterrupt
    assert out.file.getvalue().endswith("\x1b[?25h")  # type: ignore[attr-defined]
    LiveProgress(console(), clock=Clock()).finish()  # finish before start: nothing to stop


def test_without_a_terminal_only_the_final_frame_is_written() -> None:
    clock = Clock()
    out = console(terminal=False)
    view = LiveProgress(out, clock=clock)
    view.start(total=100, done=0)
    drive(view, clock, steps=2)
    assert out.file.getvalue() == ""  # type: ignore[attr-defined]
    view.finish()
    assert out.file.getvalue().count("users | elapsed") == 1  # type: ignore[attr-defined]


def test_log_handler_prints_through_the_view_console() -> None:
    out = console(terminal=True)
    logger = logging.getLogger("test.liveview")
    logger.propagate = False
    handler = ConsoleLogHandler(out)
    logger.addHandler(handler)
    try:
        view = LiveProgress(out, clock=Clock())
        view.start(total=10, done=0)
        logger.warning("Stopping: finishing in-flight requests [not markup]")
        view.finish()
    finally:
        logger.removeHandler(handler)
    assert "Stopping: finishing in-flight requests [not markup]" in out.file.getvalue()  # type: ignore[attr-defined]


# --- summary


def known_stats() -> RunStats:
    clock = Clock()
    stats = RunStats(clock)
    stats.start(total=1200, done=200)
    stats.add(
        WorkerEvent(
            pid=1,
            shard="shard-00000",
            state="done",
            shard_rows_done=1000,
            shard_rows=1000,
            figures=Counts(
                Counter(ok=900, no_cards=50, invalid=30, failed=20),
                Counter(http_429=70, http_5xx=50, timeout=10),
                requests=1100,
                retries=130,
                deduped=40,
            ),
            latencies_ms=tuple(float(ms) for ms in range(100, 0, -1)),  # 1..100, any order
        )
    )
    clock.now = 125.0
    stats.end()
    clock.now = 999.0  # the invocation's clock stopped at end()
    return stats


def test_summary_facts_on_known_stats() -> None:
    facts = dict(summary_facts(known_stats()))
    assert facts["rows ok"] == 900
    assert facts["rows no_cards"] == 50
    assert facts["rows invalid"] == 30
    assert facts["rows failed"] == 20
    assert facts["rows done before this resume"] == 200
    assert facts["requests sent"] == 1100
    assert facts["retries"] == 130
    assert facts["deduped"] == 40
    assert facts["429 answers"] == 70
    assert facts["errors by kind"] == "429 70 | 5xx 50 | timeout 10"
    assert facts["latency mean (ms)"] == 50.5
    assert facts["latency p50 (ms)"] == 50.0
    assert facts["latency p95 (ms)"] == 95.0
    assert facts["latency p99 (ms)"] == 99.0
    assert facts["duration of this invocation (s)"] == 125.0
    assert facts["throughput (users/s)"] == 8.0
    assert facts["requests/s"] == 8.8


def test_summary_table_shows_the_same_figures() -> None:
    out = Console(file=io.StringIO(), width=80, record=True, color_system=None)
    out.print(summary_table(known_stats()))
    text = out.export_text()
    assert "Run summary (this invocation)" in text
    for label, value in (("rows ok", "900"), ("requests sent", "1,100"), ("latency p95", "95")):
        line = next(line for line in text.splitlines() if label in line)
        assert line.rstrip(" │").endswith(value)
    assert "2m05s" in text


def test_top_cards_table_lists_cards_and_users_names_as_they_came() -> None:
    out = Console(file=io.StringIO(), width=80, record=True, color_system=None)
    out.print(top_cards_table([("HDFC Millennia", 12_345), ("[bold]Odd[/bold] card", 7)]))
    lines = out.export_text().splitlines()
    assert lines[0].strip() == "Best cards (top 2, whole run)"
    body = [line for line in lines if "│" in line]
    assert "HDFC Millennia" in body[0] and body[0].rstrip(" │").endswith("12,345")
    assert "[bold]Odd[/bold] card" in body[1] and body[1].rstrip(" │").endswith("7")


def test_summary_before_any_answer() -> None:
    stats = RunStats(Clock())
    stats.start(total=0, done=0)
    stats.end()
    facts = dict(summary_facts(stats))
    assert facts["latency p50 (ms)"] is None and facts["requests/s"] == 0.0
    Console(file=io.StringIO(), width=40).print(summary_table(stats))


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]
    assert percentile(values, 0.5) == 5.0
    assert percentile(values, 0.95) == 10.0
    assert percentile(values, 0.01) == 1.0
    assert percentile([], 0.5) is None


def test_latency_histogram_within_a_tenth_of_a_percent() -> None:
    rng = random.Random(7)
    values = [rng.lognormvariate(5.0, 0.6) for _ in range(20_000)] + [0.0]
    histogram = LatencyHistogram()
    histogram.add(values)
    ordered = sorted(values)
    for q in (0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0):
        exact = percentile(ordered, q)
        assert exact is not None
        assert histogram.percentile(q) == pytest.approx(exact, rel=1e-3)
    assert histogram.mean() == pytest.approx(sum(values) / len(values))
    assert len(histogram.counts) < 5000  # bounded, whatever the number of latencies


def test_log_lines_carry_the_same_facts(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    progress = LogProgress(logging.getLogger("test.liveview.log"), interval=5.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.liveview.log"):
        progress.start(total=5000, done=1000)
        for step in range(1, 11):
            clock.now += 0.5
            for pid in PIDS:
                progress.event(event(pid, step))
            progress.tick(RunSnapshot(paused_for=3.0, pause_reason="Retry-After"))
    line = caplog.records[-1].getMessage()
    assert line.startswith("Progress: 1400/5000 users processed (28.0%) - 80.0 users/s")
    assert "requests/s" in line and "retries 40" in line
    assert "errors: http_429 40" in line
    assert "latency p50 104 ms, p95 109 ms" in line
    assert line.endswith("paused (Retry-After) for 3.0s")


def test_partner_window_line_only_with_windows() -> None:
    clock = Clock()
    view = LiveProgress(console(width=120), clock=clock)
    view.start(total=100, done=0)
    line = "window 09:00-18:00 Asia/Kolkata: 10 req/s; from 18:00 20 req/s (in 1h05m)"
    view.tick(RunSnapshot(max_workers=4, window=line))
    shown = text_of(view, width=120)
    view.tick(RunSnapshot(max_workers=4))
    hidden = text_of(view, width=120)
    view.finish()
    assert f"partner  {line}" in shown and "partner" not in hidden
