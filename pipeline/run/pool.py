"""Runs a list of shards: the worker pool, the shared limits, events, signals.

`ShardPool(config, layout)` starts `processes` worker processes (or, for `processes = 1`, runs
the shards in this process on one background thread: the same interface, and the way to
debug; group.py). `run(endpoint, tasks, progress)` runs the shards on them in input order,
feeds worker events to the progress view, gives the view a `RunSnapshot` of the shared limits
a few times a second, lets the operator's `control` pull the coordinator's levers on each
tick, and turns the first Ctrl+C or SIGTERM into an orderly stop (in-flight requests end,
checkpoints are flushed). A worker process that dies is replaced and its shard
resumed from its checkpoint; a shard whose worker dies `MAX_DEATHS` times stops the run.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from pipeline import interrupts
from pipeline.api.client import Endpoint
from pipeline.api.endpoint import identity_text
from pipeline.config import Config, cache_dir
from pipeline.configrules import parse_age
from pipeline.errors import EXIT_INTERRUPTED, LocalError, PipelineError, worker_failure
from pipeline.run.group import Done, Group, ProcessGroup, ThreadGroup
from pipeline.run.reuse import REUSE, CacheSettings
from pipeline.run.tally import DONE
from pipeline.run.tasks import ShardReport, ShardTask, WorkerSettings
from pipeline.state.answers import AnswerCache
from pipeline.state.cache import STORE_FILE
from pipeline.state.store import RunLayout
from pipeline.traffic.limiter import Limiter
from pipeline.traffic.retry import RetryPolicy
from pipeline.traffic.shared import SharedLimits
from pipeline.traffic.watch import TrafficWatch
from pipeline.view.progress import Progress, WorkerEvent

log = logging.getLogger("pipeline")
TICK_SECONDS = 0.2
LATE_EVENT_SECONDS = 2.0
Control = Callable[[TrafficWatch], None]
"""Called on every tick with the coordinator's levers (ops/control.py)."""
MAX_DEATHS = 3
"""A shard whose worker process dies this many times stops the run (exit 5)."""


@dataclass
class PoolResult:
    reports: list[ShardReport] = field(default_factory=list)
    interrupted: bool = False
    outage: bool = False
    """Stopped because the API stayed down longer than `[retry] give_up_after`."""
    refused: str = ""
    """Stopped because the API refuses the run (traffic/refusal.py): why; "" = it does not."""


class ShardPool:
    """The workers of one run, started on creation (they import their modules while the
    coordinator shards the input) and closed with the pool (`with ShardPool(...)`)."""

    def __init__(self, config: Config, layout: RunLayout) -> None:
        self.config = config
        self.layout = layout
        p = config.processing
        ctx = multiprocessing.get_context("spawn")
        self.limits = SharedLimits(ctx, p.rate_limit, p.max_workers)
        self.group: Group
        if p.processes > 1:
            self.events: Any = ctx.Queue()
            self.stop: Any = ctx.Event()
            self.group = ProcessGroup(
                ctx, p.processes, self.limits, self.events, self.stop, os.getpid()
            )
        else:
            self.events, self.stop = queue.Queue(), threading.Event()
            self.group = ThreadGroup(self.limits, self.events, self.stop)

    def __enter__(self) -> ShardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()  # workers still busy (an error, Ctrl+C) stop sending at once
        self.group.join()
        if isinstance(self.group, ProcessGroup):
            self.events.close()  # its feeder thread ends with it
            self.events.join_thread()

    def close(self) -> None:
        """Tell the workers to exit, without waiting: they take ~0.15 s (a hundred threads
        each to end), which the coordinator spends writing the workbook. Leaving the pool
        waits for them."""
        self.group.close()

    def settings(self, endpoint: Endpoint, answers: str = REUSE) -> WorkerSettings:
        """What every worker process needs; `answers`: how the answer store is used."""
        c = self.config
        cache = CacheSettings(
            path=cache_dir(c) / STORE_FILE,
            endpoint=identity_text(c),
            max_age=parse_age(c.cache.max_age),
            mode=answers,
        )
        return WorkerSettings(
            endpoint=endpoint,
            policy=RetryPolicy(
                max_attempts=c.retry.max_attempts,
                backoff_initial=c.retry.backoff_initial,
                backoff_max=c.retry.backoff_max,
                retry_after_max=c.retry.retry_after_max,
            ),
            # Each process gets threads for the whole budget and the shared in-flight cap
            # holds the run to max_workers, so a process left alone at the end uses it all.
            threads=c.processing.max_workers,
            root=self.layout.root,
            id_column=c.input.id_column,
            mapping=tuple(c.request.items()),
            top_n=c.output.top_n,
            dedupe=c.processing.dedupe_requests,
            cache=cache,
        )

    def run(
        self,
        endpoint: Endpoint,
        tasks: list[ShardTask],
        progress: Progress,
        control: Control | None = None,
        answers: str = REUSE,
        lost: Callable[[], bool] = lambda: False,
    ) -> PoolResult:
        """Run the tasks; `control`, when given, is called on every tick with the levers
        (`pipeline control`: pause, resume, rate, stop); `answers`: how the answer store is
        used (reuse.py); `lost()` true (the run folder deleted or replaced) stops the run."""
        if self.config.processing.dedupe_requests:
            AnswerCache.create(self.layout.answers_file)
        settings = self.settings(endpoint, answers)
        watch = TrafficWatch(self.config, Limiter(self.limits, self.stop), self.stop)
        with _signals(self.stop):
            try:
                reports, left = self._collect(
                    settings, deque(tasks), progress, watch, control, lost
                )
            except BaseException:
                self.stop.set()
                raise
        # A refusal travels on the events (to stop the others at once) and in the report of
        # its shard (which may come back before its event does).
        refused = watch.refused or next((r.refused for r in reports if r.refused), "")
        return PoolResult(
            reports,
            interrupted=self.stop.is_set() or left,
            outage=watch.gave_up,
            refused=refused,
        )

    def _collect(
        self,
        settings: WorkerSettings,
        pending: deque[ShardTask],
        progress: Progress,
        watch: TrafficWatch,
        control: Control | None,
        lost: Callable[[], bool],
    ) -> tuple[list[ShardReport], bool]:
        """Hand out the shards in order, feed events to the progress view and the watch, until
        every shard is done or, once the run stops, every running shard has ended. Returns
        the reports and whether shards were left."""
        group, reports = self.group, []
        deaths: Counter[str] = Counter()
        failure: PipelineError | None = None
        ended: set[str] = set()  # shards whose last event ("done") has been fed
        while True:
            if not self.stop.is_set():
                group.dispatch(settings, pending)
            if not group.busy() and (not pending or self.stop.is_set()):
                break
            for event in _drain(self.events, timeout=TICK_SECONDS):
                if event is not None:
                    progress.event(event)
                    watch.event(event)
                    if event.state == DONE:
                        ended.add(event.shard)
            for done in group.collect():
                if done.report is not None:
                    reports.append(done.report)
                    if done.report.refused:  # its event may come later: stop handing out now
                        self.stop.set()
                    continue
                failure = failure or self._failed(done, deaths, pending)
                if failure is not None:
                    self.stop.set()  # the other shards end in order; then the run stops
            if control is not None:
                control(watch)
            if failure is None and lost():
                failure = LocalError(
                    f"{self.layout.root}: the output folder was deleted or replaced while the "
                    "run was going; stopped"
                )
                self.stop.set()
            watch.tick()
            progress.tick(watch.snapshot())
        if failure is not None:
            raise failure
        _feed_late_events(self.events, progress, {r.name for r in reports if r.finished} - ended)
        return reports, bool(pending)

    def _failed(
        self, done: Done, deaths: Counter[str], pending: deque[ShardTask]
    ) -> PipelineError | None:
        """A shard that ended without a report: its worker died (try it again, up to
        `MAX_DEATHS` times), or it raised an error (the run stops with it)."""
        name = done.task.name
        if done.error is not None:
            return worker_failure(name, done.error)
        if not done.started:  # the process died starting up: the shard is not to blame
            pending.appendleft(done.task)
            return None
        deaths[name] += 1
        if deaths[name] >= MAX_DEATHS:
            return LocalError(
                f"shard {name}: its worker process died {deaths[name]} times ({done.died}); "
                "the shard may need more memory than the machine gives a process (see "
                f"{self.layout.log_file}). Finished rows are saved; run the same command "
                "again to resume, with fewer [processing] processes or a smaller shard_size"
            )
        log.warning(
            "A worker process died (%s) while running %s; a new one resumes it from its "
            "checkpoint.",
            done.died,
            name,
        )
        pending.appendleft(done.task)
        return None


def _feed_late_events(events: Any, progress: Progress, waiting: set[str]) -> None:
    """The events still on their way when the last shard has returned. A shard puts its last
    event just before it returns, but a process queue's feeder thread may deliver it after the
    result (seen under load: a summary 12 rows short). Wait for the `done` event of each
    finished shard not seen yet, for at most LATE_EVENT_SECONDS; it is normally there."""
    deadline = time.monotonic() + LATE_EVENT_SECONDS
    while True:
        for event in _drain(events, timeout=0.05 if waiting else 0.0):
            if event is not None:
                progress.event(event)
                waiting.discard(event.shard if event.state == DONE else "")
        if not waiting or time.monotonic() > deadline:
            return


def _drain(events: Any, timeout: float) -> list[WorkerEvent | None]:
    """The events waiting on the queue (waiting up to `timeout` for the first); None is a
    wake-up: a shard has ended. A message torn by a worker killed while sending it is
    dropped: events only feed the view."""
    drained: list[WorkerEvent | None] = []
    try:
        drained.append(events.get(timeout=timeout) if timeout else events.get_nowait())
        while True:
            drained.append(events.get_nowait())
    except queue.Empty:
        return drained
    except Exception as exc:  # a torn message (pickle, EOF): keep what was read
        log.debug("A progress event could not be read: %s", exc)
        return drained


@contextlib.contextmanager
def _signals(stop: Any) -> Iterator[None]:
    """First Ctrl+C / SIGTERM: stop dispatching and let in-flight requests end. Second: exit
    at once (every file is written atomically, so the folder stays consistent)."""
    if interrupts.interrupted():  # a Ctrl+C that a library swallowed before the pool ran
        stop.set()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("Second interrupt: exiting now; run the same command again to resume.")
            os._exit(EXIT_INTERRUPTED)
        log.warning("Stopping: finishing in-flight requests (Ctrl+C again to exit at once)...")
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
