"""The live `rich` view of a run, and the summary printed at its end.

Owns what a person sees on the run's own terminal while it goes and when it ends:
`LiveProgress` implements the `progress.Progress` interface over a `rich.live.Live` that only
the coordinator drives (the workers send events; nothing here runs in a worker), drawing the
frames of frame.py; `ConsoleLogHandler` puts log lines above it. `summary_table` and
`summary_facts` give this invocation's figures at the end, for the screen and for the
workbook's Summary sheet; `top_cards_table` the run's best cards under them.

Cheap by construction: the Live does not auto-refresh; `tick()` redraws at most
`refresh_per_second` times a second, and a frame reads only bounded state from `RunStats`
(rate windows of a few seconds, the last 2,000 latencies, one line per worker process) and is
drawn as styled Text (no table layout), so its cost is small and does not grow with the rows
of the run.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pipeline import schema
from pipeline.view.facts import facts_of
from pipeline.view.frame import errors_line, render_facts
from pipeline.view.progress import RunSnapshot, RunStats, WorkerEvent, format_duration


class LiveProgress:
    """The live view: `start()` opens it, `tick()` redraws it when due, `finish()` closes it.

    `finish()` is idempotent and always stops the Live, so the terminal gets its cursor back
    on Ctrl+C as well (call it from a `finally`, or use the view as a context manager).
    """

    def __init__(
        self,
        console: Console,
        clock: Callable[[], float] = time.monotonic,
        refresh_per_second: float = 4.0,
        title: str = "",
    ) -> None:
        """`title`: a line shown above every frame ("" = none), e.g. that answers are
        simulated."""
        if refresh_per_second <= 0:
            raise ValueError(f"refresh_per_second ({refresh_per_second}) must be more than 0")
        self.console = console
        self.title = title
        self.clock = clock
        self.interval = 1.0 / refresh_per_second
        self.stats = RunStats(clock)
        self.frames = 0
        """Frames drawn so far (tests and benchmarks read it)."""
        self._live = Live(
            console=console,
            auto_refresh=False,
            refresh_per_second=refresh_per_second,
            transient=False,
        )
        self._last_frame = -math.inf
        self._running = False
        self._finished = False

    def start(self, total: int, done: int) -> None:
        self.stats.start(total, done)
        self._live.update(self.render())
        self._live.start(refresh=True)
        self._running = True
        self._last_frame = self.clock()
        self.frames += 1

    def event(self, event: WorkerEvent) -> None:
        self.stats.add(event)

    def tick(self, snapshot: RunSnapshot) -> None:
        self.stats.sample(snapshot)
        now = self.clock()
        if self._running and now - self._last_frame >= self.interval:
            self._last_frame = now
            self._live.update(self.render(), refresh=True)
            self.frames += 1

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        self.stats.end()
        try:
            if self._running:
                self._live.update(self.render())  # stop() draws this last frame
        finally:
            self._running = False
            self._live.stop()

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish()

    def render(self) -> RenderableType:
        """One frame of the view, from the stats as they are now, under the title if any."""
        frame = render_facts(facts_of(self.stats), self.console.width)
        if self.title:
            return Group(Text(f" {self.title} ", style="bold black on yellow"), frame)
        return frame


# --- the end of a run


def summary_facts(stats: RunStats) -> list[tuple[str, object]]:
    """This invocation's figures as (label, value) pairs: ints, floats (rounded), text or None.

    Rows by state are this invocation's; `rows done before this resume` were finished before
    it started (a resumed run). Latencies are in ms over every answer of this invocation (the
    percentiles to within 0.05%, see `LatencyHistogram`); None when there were none.
    """
    s, elapsed, h = stats.figures, stats.elapsed, stats.latency
    facts: list[tuple[str, object]] = [
        (f"rows {state}", s.states[state]) for state in schema.STATES
    ]
    facts += [
        ("rows done before this resume", stats.done_before),
        ("requests sent", s.requests),
        ("retries", s.retries),
        ("deduped", s.deduped),
        ("answers reused from the store", s.reused),
        ("oldest reused answer", _age(s.oldest_answer_at)),
        ("requests saved by the store", s.saved),
        ("429 answers", s.errors["http_429"]),
        ("errors by kind", errors_line(s.errors)),
        ("latency mean (ms)", _round(h.mean(), 1)),
        ("latency p50 (ms)", _round(h.percentile(0.5), 1)),
        ("latency p95 (ms)", _round(h.percentile(0.95), 1)),
        ("latency p99 (ms)", _round(h.percentile(0.99), 1)),
        ("duration of this invocation (s)", round(elapsed, 1)),
        ("throughput (users/s)", round(stats.average_rate(), 2)),
        ("requests/s", round(s.requests / elapsed, 2) if elapsed > 0 else 0.0),
    ]
    return facts


def summary_table(stats: RunStats) -> Table:
    """`summary_facts` as a two-column table for the screen."""
    table = Table(title="Run summary (this invocation)", show_header=False, title_justify="left")
    table.add_column("figure", style="bold", overflow="fold")
    table.add_column("value", justify="right", overflow="fold")
    for label, value in summary_facts(stats):
        if label == "duration of this invocation (s)" and isinstance(value, float):
            table.add_row(label, format_duration(value))
        else:
            table.add_row(label, _cell(value))
    return table


def top_cards_table(cards: Sequence[tuple[str, int]]) -> Table:
    """The cards that are the best card of most users over the whole run, with their users,
    for under the run's table. Names are shown as they came (never read as markup)."""
    table = Table(title=f"Best cards (top {len(cards)}, whole run)", title_justify="left")
    table.add_column("best card", overflow="fold")
    table.add_column("users", justify="right")
    for name, users in cards:
        table.add_row(Text(name), f"{users:,}")
    return table


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return str(value)


def _age(fetched_at: float | None) -> str | None:
    """How old an answer fetched at `fetched_at` (Unix seconds) is now, for people."""
    from pipeline.view.cachestats import age_text

    return None if fetched_at is None else age_text(time.time() - fetched_at)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


class ConsoleLogHandler(logging.Handler):
    """Log records printed through the live view's console, above the live display.

    A plain StreamHandler on the same terminal would write through the frame and tear it;
    while the view runs, send the `pipeline` logger's console output here instead.
    """

    def __init__(self, console: Console, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = Text(self.format(record))
            self.console.print(text, markup=False, highlight=False, emoji=False)
        except Exception:  # logging must never raise into the run; report as logging does
            self.handleError(record)
