"""The live `rich` view of a run, and the summary printed at its end.

Owns what a person sees on a terminal while a run goes: `LiveProgress` implements the
`progress.Progress` interface over a `rich.live.Live` that only the coordinator drives (the
workers send events; nothing here runs in a worker). `summary_table` and `summary_facts` give
this invocation's figures at the end, for the screen and for the workbook's Summary sheet;
`top_cards_table` the run's best cards under them.

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
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pipeline import schema
from pipeline.view.facts import Facts, error_kinds, facts_of
from pipeline.view.progress import RunSnapshot, RunStats, WorkerEvent, format_duration

MAX_WORKER_LINES = 16
"""Worker processes listed one per line; more are summed up in one line."""
MAX_NOTES = 3
"""The operator's latest changes shown on the `control` line."""

_ERROR_LABELS = {
    "http_429": "429",
    "http_5xx": "5xx",
    "http_4xx": "4xx",
    "timeout": "timeout",
    "connection": "connection",
    "bad_body": "bad body",
    "other": "other",
}
_SEP = " | "
_STATE_STYLES = {"working": "green", "backing off": "yellow", "paused": "bold red", "done": "dim"}


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


def render_facts(f: Facts, width: int) -> RenderableType:
    """One frame of the view (`run`'s and `watch`'s), `width` columns wide.

    Plain styled Text, not tables: a frame costs ~0.3 ms instead of ~2.5 ms with grids,
    and Text wraps cleanly in a narrow terminal.
    """
    total = max(f.total, 1)
    done = min(f.done, total) if f.total else total
    percent = Text(f"{100.0 * done / total:5.1f}% ", end="")
    bar = ProgressBar(total=total, completed=done, width=max(1, width - 7))
    text = Text("\n")  # a ProgressBar does not end its line; this does
    if f.snapshot.held or f.snapshot.paused_for > 0:
        text.append_text(pause_banner(f.snapshot)).append("\n")
    text.append(_overall_line(f))
    lines = [
        ("rates", _rates_line(f)),
        ("outcomes", _outcomes_line(f)),
        ("errors", _errors_line(f.errors)),
        ("latency", _latency_line(f)),
    ]
    if f.snapshot.window:
        lines.append(("partner", f.snapshot.window))
    if f.snapshot.notes:
        lines.append(("control", _SEP.join(f.snapshot.notes[-MAX_NOTES:])))
    for label, value in lines:
        text.append(f"\n{label:<9}", style="bold").append(value)
    for w in f.workers[:MAX_WORKER_LINES]:
        text.append(f"\nworker {w.pid} {w.shard} {w.rows_done:,}/{w.rows:,} ")
        text.append(w.state, style=_STATE_STYLES.get(w.state, ""))
    if len(f.workers) > MAX_WORKER_LINES:
        text.append(f"\n+{len(f.workers) - MAX_WORKER_LINES} more worker processes")
    return Group(percent, bar, text)


def pause_banner(snapshot: RunSnapshot) -> Text:
    if snapshot.held:
        words = " PAUSED by the operator: `pipeline control resume` to go on "
    else:
        reason = snapshot.pause_reason or "pause"
        left = format_duration(snapshot.paused_for)
        words = f" PAUSED ({reason}): requests resume in {left} "
    return Text(words, style="bold white on red")


def _overall_line(f: Facts) -> str:
    return _SEP.join(
        (
            f"{f.done:,}/{f.total:,} users",
            f"elapsed {format_duration(f.elapsed)}",
            f"ETA {format_duration(f.eta) if f.eta is not None else '-'}",
        )
    )


def _rates_line(f: Facts) -> str:
    snap = f.snapshot
    requests = f"requests/s {f.requests_now:.1f}"
    if snap.rate_limit > 0:
        requests += f" of {snap.rate_limit:g} limit"
    if snap.current_rate > 0 and abs(snap.current_rate - snap.rate_limit) > 1e-9:
        requests += f" (adaptive {snap.current_rate:.1f})"
    parts = [f"users/s {f.users_now:.1f} now, {f.users_avg:.1f} avg", requests]
    if snap.max_workers:
        parts.append(f"in flight {snap.in_flight}/{snap.max_workers}")
    return _SEP.join(parts)


def _outcomes_line(f: Facts) -> str:
    parts = [f"{state} {f.counts.get(state, 0):,}" for state in schema.STATES]
    parts += [f"retries {f.retries:,}", f"deduped {f.deduped:,}"]
    return _SEP.join(parts)


def _errors_line(errors: Mapping[str, int]) -> str:
    kinds = error_kinds(errors)
    if not kinds:
        return "none"
    return _SEP.join(f"{_ERROR_LABELS.get(k, k)} {errors[k]:,}" for k in kinds)


def _latency_line(f: Facts) -> str:
    p50, p95, p99 = f.latency
    if p50 is None or p95 is None or p99 is None:
        return "-"
    window = f"(last {f.latency_window:,})"
    return _SEP.join((f"p50 {p50:.0f} ms", f"p95 {p95:.0f} ms", f"p99 {p99:.0f} ms {window}"))


# --- the end of a run


def summary_facts(stats: RunStats) -> list[tuple[str, object]]:
    """This invocation's figures as (label, value) pairs: ints, floats (rounded), text or None.

    Rows by state are this invocation's; `rows done before this resume` were finished before
    it started (a resumed run). Latencies are in ms over every answer of this invocation (the
    percentiles to within 0.05%, see `LatencyHistogram`); None when there were none.
    """
    s = stats
    elapsed = s.elapsed
    h = s.latency
    facts: list[tuple[str, object]] = [
        (f"rows {state}", s.counts[state]) for state in schema.STATES
    ]
    facts += [
        ("rows done before this resume", s.done_before),
        ("requests sent", s.requests),
        ("retries", s.retries),
        ("deduped", s.deduped),
        ("answers reused from the store", s.reused),
        ("oldest reused answer", _age(s.oldest_answer_at)),
        ("requests saved by the store", s.saved),
        ("429 answers", s.errors["http_429"]),
        ("errors by kind", _errors_line(s.errors)),
        ("latency mean (ms)", _round(h.mean(), 1)),
        ("latency p50 (ms)", _round(h.percentile(0.5), 1)),
        ("latency p95 (ms)", _round(h.percentile(0.95), 1)),
        ("latency p99 (ms)", _round(h.percentile(0.99), 1)),
        ("duration of this invocation (s)", round(elapsed, 1)),
        ("throughput (users/s)", round(s.average_rate(), 2)),
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
