"""frame.py: one frame of the live view, drawn from hand-made Facts (no clock, no Live)."""

from __future__ import annotations

import io

from rich.console import Console

from pipeline.view.facts import Facts, WorkerLine
from pipeline.view.frame import MAX_NOTES, MAX_WORKER_LINES, errors_line, render_facts
from pipeline.view.progress import RunSnapshot


def text_of(facts: Facts, width: int = 100) -> str:
    screen = Console(file=io.StringIO(), width=width, record=True, color_system=None)
    screen.print(render_facts(facts, width))
    return screen.export_text()


def test_the_lines_of_a_frame_in_order() -> None:
    facts = Facts(
        total=200,
        done=50,
        counts={"ok": 40, "failed": 10},
        errors={"timeout": 3, "http_429": 2},
        retries=5,
        deduped=7,
        elapsed=20.0,
        eta=60.0,
        users_now=2.5,
        users_avg=2.0,
        requests_now=3.0,
        latency=(100.0, 200.0, 300.0),
        latency_window=50,
        workers=(WorkerLine(7, "shard-00001", 10, 100, "working"),),
        snapshot=RunSnapshot(in_flight=3, max_workers=4, window="partner window 09:00-18:00"),
    )
    lines = [line.rstrip() for line in text_of(facts).splitlines() if line.strip()]
    assert lines[0].startswith(" 25.0%")
    assert lines[1:] == [
        "50/200 users | elapsed 20.0s | ETA 1m00s",
        "rates    users/s 2.5 now, 2.0 avg | requests/s 3.0 | in flight 3/4",
        "outcomes ok 40 | no_cards 0 | invalid 0 | failed 10 | retries 5 | deduped 7",
        "errors   429 2 | timeout 3",
        "latency  p50 100 ms | p95 200 ms | p99 300 ms (last 50)",
        "partner  partner window 09:00-18:00",
        "worker 7 shard-00001 10/100 working",
    ]


def test_only_the_latest_notes_and_the_first_workers_are_listed() -> None:
    notes = tuple(f"10:00:0{i} rate {i}" for i in range(MAX_NOTES + 2))
    workers = tuple(WorkerLine(pid, "shard-00001", 0, 10, "done") for pid in range(20))
    text = text_of(Facts(total=10, workers=workers, snapshot=RunSnapshot(notes=notes)))
    assert "control  " + " | ".join(notes[-MAX_NOTES:]) in text
    assert notes[0] not in text
    assert f"worker {MAX_WORKER_LINES - 1} " in text and f"worker {MAX_WORKER_LINES} " not in text
    assert f"+{20 - MAX_WORKER_LINES} more worker processes" in text


def test_a_pause_is_a_banner_above_the_lines() -> None:
    paused = text_of(Facts(total=10, snapshot=RunSnapshot(paused_for=90.0, pause_reason="outage")))
    assert "PAUSED (outage): requests resume in 1m30s" in paused
    held = text_of(Facts(total=10, snapshot=RunSnapshot(held=True, paused_for=5.0)))
    assert "PAUSED by the operator: `pipeline control resume` to go on" in held


def test_an_empty_run_is_a_full_bar_and_errors_by_label() -> None:
    assert "100.0%" in text_of(Facts())
    assert errors_line({}) == "none"
    assert errors_line({"http_5xx": 1, "bad_body": 2, "weird": 3}) == "5xx 1 | bad body 2 | weird 3"
