"""Runs a list of shards: the worker pool, the shared limits, events, signals.

`ShardPool(config, layout)` starts `processes` worker processes (or, for `processes = 1`, runs
the shards in this process on one background thread: the same interface, and the way to
debug). `run(endpoint, tasks, progress)` runs the shards on them, feeds worker events to the
progress view, gives the view a `RunSnapshot` of the shared limits a few times a second, lets
the operator's `control` pull the coordinator's levers on each tick, and turns the first Ctrl+C
or SIGTERM into an orderly stop (in-flight requests end, checkpoints are flushed).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from pipeline.api.client import Endpoint
from pipeline.api.endpoint import identity_text
from pipeline.config import Config, cache_dir, parse_age
from pipeline.errors import EXIT_INTERRUPTED, PipelineError
from pipeline.run import worker
from pipeline.run.reuse import REUSE, CacheSettings
from pipeline.run.tally import DONE
from pipeline.run.tasks import ShardReport, ShardTask, WorkerSettings
from pipeline.state.answers import AnswerCache
from pipeline.state.cache import STORE_FILE
from pipeline.state.store import RunLayout
from pipeline.traffic.limiter import Limiter, SharedLimits
from pipeline.traffic.retry import RetryPolicy
from pipeline.traffic.watch import TrafficWatch
from pipeline.view.progress import Progress, WorkerEvent

log = logging.getLogger("pipeline")
TICK_SECONDS = 0.2
LATE_EVENT_SECONDS = 2.0
Control = Callable[[TrafficWatch], None]
"""Called on every tick with the coordinator's levers (ops/control.py)."""


@dataclass
class PoolResult:
    reports: list[ShardReport] = field(default_factory=list)
    interrupted: bool = False
    outage: bool = False
    """Stopped because the API stayed down longer than `[retry] give_up_after`."""
    refused: str = ""
    """Stopped because the API refuses the run (traffic/refusal.py): why; "" = it does not."""


class ShardPool:
    """The worker processes of one run, started on creation (they import their modules while
    the coordinator shards the input) and closed with the pool (`with ShardPool(...)`)."""

    def __init__(self, config: Config, layout: RunLayout) -> None:
        self.config = config
        self.layout = layout
        p = config.processing
        ctx = multiprocessing.get_context("spawn")
        self.limits = SharedLimits(ctx, p.rate_limit, p.max_workers)
        self.executor: Executor
        self.closing: threading.Thread | None = None
        """The workers' shutdown, once `close` started it."""
        if p.processes > 1:
            self.events: Any = ctx.Queue()
            self.stop: Any = ctx.Event()
            self.executor = ProcessPoolExecutor(
                p.processes,
                mp_context=ctx,
                initializer=worker.init_process,
                initargs=(self.limits, self.events, self.stop, os.getpid()),
            )
            for _ in range(p.processes):  # each submit to a pool with no idle process starts one
                self.executor.submit(worker.ready)
        else:
            self.events, self.stop = queue.Queue(), threading.Event()
            worker.init_local(self.limits, self.events, self.stop)
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="shard")

    def __enter__(self) -> ShardPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()  # workers still busy (an error, Ctrl+C) stop sending at once
        if self.closing is not None:
            self.closing.join()
        self.executor.shutdown(wait=True, cancel_futures=True)
        if isinstance(self.executor, ThreadPoolExecutor):  # serial: the shards ran here
            worker.close_local()
        else:
            self.events.close()  # its feeder thread ends with it
            self.events.join_thread()

    def close(self) -> None:
        """Tell the workers to exit, without waiting: they take ~0.15 s (a hundred threads
        each to end), which the coordinator spends writing the workbook. Leaving the pool
        waits for them."""
        if self.closing is None:
            shutdown = functools.partial(self.executor.shutdown, wait=True, cancel_futures=True)
            self.closing = threading.Thread(target=shutdown, name="pool-close")
            self.closing.start()

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
    ) -> PoolResult:
        """Run the tasks; `control`, when given, is called on every tick with the levers
        (`pipeline control`: pause, resume, rate, stop); `answers`: how the answer store is
        used (reuse.py)."""
        if self.config.processing.dedupe_requests:
            AnswerCache.create(self.layout.answers_file)
        settings = self.settings(endpoint, answers)
        watch = TrafficWatch(self.config, Limiter(self.limits, self.stop), self.stop)
        with _signals(self.stop):
            futures = [self.executor.submit(worker.run_shard, settings, t) for t in tasks]
            for future in futures:  # wake the collector when a shard ends, not at its next tick
                future.add_done_callback(lambda _: self.events.put(None))
            try:
                reports = self._collect(futures, self.events, progress, watch, control)
            except BaseException:
                self.stop.set()
                raise
        # A refusal travels on the events (to stop the others at once) and in the report of
        # its shard (which may come back before its event does).
        refused = watch.refused or next((r.refused for r in reports if r.refused), "")
        return PoolResult(
            reports, interrupted=self.stop.is_set(), outage=watch.gave_up, refused=refused
        )

    def _collect(
        self,
        futures: list[Future[ShardReport]],
        events: Any,
        progress: Progress,
        watch: TrafficWatch,
        control: Control | None,
    ) -> list[ShardReport]:
        """Feed events to the progress view and the watch until every shard is done."""
        ended: set[str] = set()  # shards whose last event ("done") has been fed
        while not all(f.done() for f in futures):
            for event in _drain(events, timeout=TICK_SECONDS):
                if event is not None:
                    progress.event(event)
                    watch.event(event)
                    if event.state == DONE:
                        ended.add(event.shard)
            if control is not None:
                control(watch)
            watch.tick()
            progress.tick(watch.snapshot())
        reports = []
        for future in futures:
            try:
                reports.append(future.result())
            except Exception as exc:
                raise PipelineError(f"a worker failed: {type(exc).__name__}: {exc}") from exc
        late = {r.name for r in reports if r.finished} - ended
        _feed_late_events(events, progress, late)
        return reports


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
    wake-up: a shard has ended."""
    drained: list[WorkerEvent | None] = []
    try:
        drained.append(events.get(timeout=timeout) if timeout else events.get_nowait())
        while True:
            drained.append(events.get_nowait())
    except queue.Empty:
        return drained


@contextlib.contextmanager
def _signals(stop: Any) -> Iterator[None]:
    """First Ctrl+C / SIGTERM: stop dispatching and let in-flight requests end. Second: exit
    at once (every file is written atomically, so the folder stays consistent)."""
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
