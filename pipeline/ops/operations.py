"""The operating side of one run, for the coordinator: status file, control, messages, metrics.

`Operations(config, layout, webhook, metrics)` is entered once the run holds its folder's
lock, and left when the run ends, however it ends (the exit code, or the exception that will
become one). In between:

- `observe(view)` wraps the run's progress view: every worker event also feeds the metrics;
  every tick also rewrites status.json (about once a second, for `pipeline watch`), checks
  for progress steps, a stall or an outage worth a message, and sets the metrics' gauges;
- `control` is what the pool calls every tick to apply `pipeline control` commands.

Nothing here slows the run: messages go out on the notifier's thread, the status file is one
small write a second, and the figures come from the view's own running totals.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from pipeline.config import Config, MetricsConfig
from pipeline.errors import EXIT_INTERRUPTED, EXIT_LOCAL, EXIT_USAGE, PipelineError
from pipeline.ops import alerts, messages
from pipeline.ops.control import RunControl
from pipeline.ops.notify import Message, Notifier
from pipeline.state.channel import (
    FINISHED,
    RUNNING,
    STARTING,
    STOPPED,
    discard_commands,
    write_status,
)
from pipeline.state.store import RunLayout
from pipeline.view.facts import Facts, facts_of
from pipeline.view.progress import Progress, RunSnapshot, RunStats, WorkerEvent

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are on
    from pipeline.ops.metrics import RunMetrics

log = logging.getLogger("pipeline")
STATUS_SECONDS = 1.0
"""How often status.json is rewritten."""


class Operations:
    def __init__(
        self,
        config: Config,
        layout: RunLayout,
        webhook: str | None = None,
        metrics: RunMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.layout = layout
        self.metrics = metrics
        self.clock = clock
        self.notifier = Notifier(webhook) if webhook else None
        self.control = RunControl(layout)
        self.facts = Facts()
        self.shards = (0, 0)
        self.started_at = _now()
        self.state = STARTING
        self.counts: dict[str, int] = {}
        """The run's rows by state at its end (`counted`), for the `finished` message."""
        self._last_status = -1e9

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """The run's time in its folder (commands left for an earlier run are dropped first);
        a run that raises ends here with its exit code. Until its requests begin the status
        file is left as the last run left it: `watch` tells a starting run by its pid."""
        left = discard_commands(self.layout)
        if left:
            log.info("Control: %d command(s) left for an earlier run discarded.", left)
        try:
            yield
        except BaseException as exc:
            self.ended(_exit_code(exc), exc)
            raise

    # --- the run's life

    def observe(self, view: Progress, shards_total: int, shards_todo: int) -> Progress:
        """The view, wrapped so that the run's figures also reach status, messages, metrics."""
        self.shards = (shards_total - shards_todo, shards_total)
        return _Observed(view, self)

    def started(self, stats: RunStats) -> None:
        self.state = RUNNING
        self.stall = alerts.StallWatch(self.config.notify.stall_after * 60.0, self.clock())
        self.milestones = alerts.Milestones(
            self.config.notify.every_percent, stats.done, stats.total
        )
        self.outage = alerts.OutageEdge()
        self._tell(messages.started(self._where(), stats.total, stats.done, self.config))
        self._write_status()

    def event(self, event: WorkerEvent) -> None:
        if event.state == "done":
            self.shards = (self.shards[0] + 1, self.shards[1])
        if self.metrics is not None:
            self.metrics.event(event)

    def tick(self, stats: RunStats, snapshot: RunSnapshot, force: bool = False) -> None:
        now = self.clock()
        if self.metrics is not None:
            self.metrics.tick(
                snapshot, done=stats.done, total=stats.total, eta=stats.eta(), shards=self.shards
            )
        if now - self._last_status >= STATUS_SECONDS or force:
            self.facts = facts_of(stats)
            self._write_status()
        if self.state != RUNNING:
            return
        where = self._where()
        for step in self.milestones.reached(stats.done, stats.total):
            self._tell(messages.progress(where, step, stats.done, stats.total, stats.eta()))
        paused = snapshot.held or snapshot.paused_for > 0
        change = self.stall.update(stats.done, paused, now)
        if change is not None:
            self._tell(messages.stall(where, change, self.config.notify.stall_after))
        edge = self.outage.update(snapshot.pause_reason == "outage", now)
        if edge is not None:
            self._tell(messages.outage(where, *edge, self.config.retry.give_up_after))

    def counted(self, counts: Mapping[str, int]) -> None:
        """The coordinator's count of the run's rows by state, once every shard is done: the
        `finished` message says them, so the result shards are read once, not twice."""
        self.counts = dict(counts)

    def ended(self, code: int, error: BaseException | None = None) -> int:
        """The run is over with `code`: last status, the last message. Returns `code`."""
        reason = messages.reason(code, error, stopped_by_control=self.control.stopped)
        begun = self.state != STARTING
        self.state = FINISHED if code < EXIT_USAGE else STOPPED
        if begun or code != EXIT_USAGE:  # an exit 2 leaves the folder as it found it
            self._write_status(code=code, reason=reason)
        if code < EXIT_USAGE:
            where, facts = self._where(), self.facts
            self._tell(messages.finished(where, code, facts, self.config, self.layout, self.counts))
        else:
            self._tell(messages.stopped(self._where(), code, reason))
        if self.notifier is not None:
            self.notifier.close()
            self.notifier = None
        return code

    # --- helpers

    def _tell(self, message: Message) -> None:
        if self.notifier is not None:
            log.info("Notification (%s): %s", message.event, message.text)
            self.notifier.send(message)

    def _where(self) -> dict[str, Any]:
        return {"folder": str(self.layout.root.resolve()), "host": socket.gethostname()}

    def _write_status(self, code: int | None = None, reason: str = "") -> None:
        self._last_status = self.clock()
        record: dict[str, Any] = {
            "format": 1,
            "pid": os.getpid(),
            "state": self.state,
            "started_at": self.started_at,
            "updated_at": _now(),
            "updated_unix": round(time.time(), 3),
            "shards": {"done": self.shards[0], "total": self.shards[1]},
            "exit_code": code,
            "reason": reason,
            "facts": self.facts.record(),
        }
        try:
            write_status(self.layout, record)
        except OSError as exc:  # a full disk stops the run elsewhere; the view is not worth it
            log.debug("status.json not written: %s", exc)


class _Observed:
    """A progress view whose figures also go to the run's `Operations`."""

    def __init__(self, view: Progress, ops: Operations) -> None:
        self.view = view
        self.ops = ops
        own = getattr(view, "stats", None)
        self._own = own is None  # a view without figures (NullProgress): keep them here
        self._stats: RunStats = own if isinstance(own, RunStats) else RunStats()

    def start(self, total: int, done: int) -> None:
        self.view.start(total, done)
        if self._own:
            self._stats.start(total, done)
        self.ops.started(self._stats)

    def event(self, event: WorkerEvent) -> None:
        self.view.event(event)
        if self._own:
            self._stats.add(event)
        self.ops.event(event)

    def tick(self, snapshot: RunSnapshot) -> None:
        snapshot = replace(snapshot, notes=tuple(self.ops.control.notes))
        self.view.tick(snapshot)
        if self._own:
            self._stats.sample(snapshot)
        self.ops.tick(self._stats, snapshot)

    def finish(self) -> None:
        self.view.finish()
        if self._own:
            self._stats.end()
        self.ops.tick(self._stats, self._stats.snapshot, force=True)


@contextlib.contextmanager
def metrics_server(config: MetricsConfig) -> Iterator[RunMetrics | None]:
    """The run's metrics, served while the block runs; None when `[metrics] port` is 0.
    (prometheus_client is imported only then.)"""
    if not config.port:
        yield None
        return
    from pipeline.ops.metrics import serve

    with serve(config) as metrics:
        yield metrics


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, PipelineError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_LOCAL


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
