"""`pipeline watch`: the view of a run going on elsewhere, drawn from its status file.

The run rewrites `status.json` in its folder about once a second (ops/operations.py); `watch`
reads it as often and draws the same frame as the run's own live view (a terminal) or the same
plain progress lines (anything else), under a line that says whose run it is and how fresh the
figures are. It never writes to the folder, so any number of people can watch one run. When
the run is not going (it ended, was killed, or never started) it shows the last figures, says
so, and returns.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from pipeline.errors import RunStateError
from pipeline.state.channel import FINISHED, STARTING, STOPPED, read_status, running_pid
from pipeline.state.store import RunLayout
from pipeline.view.facts import facts_from_record, progress_line
from pipeline.view.frame import render_facts

POLL_SECONDS = 1.0
LINE_SECONDS = 5.0
"""Plain lines: at most one every this many seconds, as `run` writes them."""
STALE_SECONDS = 10.0
"""A running run's figures older than this are flagged: its coordinator is not keeping up."""


@dataclass(frozen=True)
class Seen:
    """One look at the folder: the last status written, and the pid of the run going now."""

    record: dict[str, Any] | None
    pid: int | None

    @property
    def running(self) -> bool:
        return self.pid is not None


def look(layout: RunLayout) -> Seen:
    return Seen(read_status(layout), running_pid(layout))


def headline(layout: RunLayout, seen: Seen, wall: float) -> str:
    """Whose run this is and whether it is going."""
    root, record = layout.root, seen.record
    if seen.pid is not None:
        if record is None or record.get("pid") != seen.pid or record.get("state") == STARTING:
            return f"The run in {root} (pid {seen.pid}) is starting: it has not begun requesting."
        age = wall - float(record.get("updated_unix", wall))
        text = f"Watching the run in {root} (pid {seen.pid}), updated {max(age, 0.0):.0f}s ago"
        if age > STALE_SECONDS:
            text += ": its figures are not being updated (a very busy machine?)"
        return text + "."
    if record is None:
        return f"No run is going in {root}."
    state, code = record.get("state"), record.get("exit_code")
    if state == FINISHED:
        how = f"it finished with exit code {code}"
    elif state == STOPPED:
        how = f"it stopped with exit code {code}: {record.get('reason', '')}"
    else:
        how = f"it was killed or crashed (last update {_local(record)})"
    return f"The run in {root} is not running: {how}. `pipeline status` tells what is left."


def render_status(layout: RunLayout, seen: Seen, width: int, wall: float) -> RenderableType:
    """The headline, then the run's frame as its own terminal shows it."""
    line = Text(headline(layout, seen, wall), style="bold")
    facts = _facts(seen)
    return line if facts is None else Group(line, render_facts(facts_from_record(facts), width))


def _facts(seen: Seen) -> dict[str, Any] | None:
    """The run's figures, once it has begun requesting."""
    record = seen.record or {}
    facts = record.get("facts")
    return facts if isinstance(facts, dict) and record.get("state") != STARTING else None


def watch(
    layout: RunLayout,
    console: Console,
    *,
    live: bool,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Follow the run in `layout` until it is not running; returns the exit code (0)."""
    seen = look(layout)
    if seen.record is None and not seen.running:
        raise RunStateError(f"{layout.root}: no run here to watch (no status.json)")
    if live:
        with Live(console=console, auto_refresh=False, transient=False) as view:
            while True:
                view.update(render_status(layout, seen, console.width, wall()), refresh=True)
                if not seen.running:
                    return 0
                sleep(POLL_SECONDS)
                seen = look(layout)
    said, last_line = "", -math.inf
    while True:
        line = headline(layout, seen, wall())
        news = line.split(",")[0]  # the headline without "updated Ns ago"
        if seen.running and news != said:
            _say(console, line)
            said = news
        facts = _facts(seen)
        if facts is not None and (clock() - last_line >= LINE_SECONDS or not seen.running):
            _say(console, progress_line(facts_from_record(facts)))
            last_line = clock()
        if not seen.running:
            _say(console, line)
            return 0
        sleep(POLL_SECONDS)
        seen = look(layout)


def _say(console: Console, line: str) -> None:
    """One plain line, unwrapped: a log reader or `grep` wants it whole."""
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _local(record: dict[str, Any]) -> str:
    stamp = record.get("updated_unix")
    if not isinstance(stamp, int | float):
        return "unknown"
    return datetime.fromtimestamp(stamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
