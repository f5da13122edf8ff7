"""Runs a list of shards: the worker pool, the shared limits, events, signals.

`ShardPool(config, layout, endpoint).run(tasks, progress)` starts `processes` worker processes
(or, for `processes = 1`, runs the shards in this process on one background thread: the same
interface, and the way to debug), feeds worker events to the progress view, gives the view a
`RunSnapshot` of the shared limits a few times a second, and turns the first Ctrl+C or SIGTERM
into an orderly stop (in-flight requests end, checkpoints are flushed).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from pipeline import worker
from pipeline.client import Endpoint
from pipeline.config import Config
from pipeline.errors import EXIT_INTERRUPTED, PipelineError
from pipeline.progress import Progress, RunSnapshot, WorkerEvent
from pipeline.ratelimit import Limiter, SharedLimits
from pipeline.retry import RetryPolicy
from pipeline.store import RunLayout

log = logging.getLogger("pipeline")
TICK_SECONDS = 0.2


@dataclass
class PoolResult:
    reports: list[worker.ShardReport] = field(default_factory=list)
    interrupted: bool = False


class ShardPool:
    def __init__(self, config: Config, layout: RunLayout, endpoint: Endpoint) -> None:
        self.config = config
        self.layout = layout
        self.endpoint = endpoint

    def settings(self) -> worker.WorkerSettings:
        c = self.config
        return worker.WorkerSettings(
            endpoint=self.endpoint,
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
        )

    def run(self, tasks: list[worker.ShardTask], progress: Progress) -> PoolResult:
        processes = max(1, min(self.config.processing.processes, len(tasks)))
        ctx = multiprocessing.get_context("spawn")
        p = self.config.processing
        limits = SharedLimits(ctx, p.rate_limit, p.max_workers)
        settings = self.settings()
        executor: Executor
        if processes > 1:
            events: Any = ctx.Queue()
            stop: Any = ctx.Event()
            executor = ProcessPoolExecutor(
                processes,
                mp_context=ctx,
                initializer=worker.init_process,
                initargs=(settings, limits, events, stop),
            )
        else:
            events, stop = queue.Queue(), threading.Event()
            worker.init_local(settings, limits, events, stop)
            executor = ThreadPoolExecutor(1, thread_name_prefix="shard")
        limiter = Limiter(limits, stop)
        with _signals(stop), executor:
            futures = [executor.submit(worker.run_shard, task) for task in tasks]
            try:
                reports = self._collect(futures, events, progress, limiter)
            except BaseException:
                stop.set()
                raise
        return PoolResult(reports, interrupted=stop.is_set())

    def _collect(
        self,
        futures: list[Future[worker.ShardReport]],
        events: Any,
        progress: Progress,
        limiter: Limiter,
    ) -> list[worker.ShardReport]:
        """Feed events to the progress view until every shard's future is done."""
        while not all(f.done() for f in futures):
            _drain(events, progress, timeout=TICK_SECONDS)
            progress.tick(self._snapshot(limiter))
        _drain(events, progress, timeout=0.0)
        reports = []
        for future in futures:
            try:
                reports.append(future.result())
            except Exception as exc:
                raise PipelineError(f"a worker failed: {type(exc).__name__}: {exc}") from exc
        return reports

    def _snapshot(self, limiter: Limiter) -> RunSnapshot:
        p = self.config.processing
        paused = limiter.paused_for()
        return RunSnapshot(
            in_flight=limiter.in_flight(),
            max_workers=p.max_workers,
            rate_limit=p.rate_limit,
            current_rate=limiter.rate(),
            paused_for=paused,
            pause_reason="Retry-After" if paused > 0 else "",
        )


def _drain(events: Any, progress: Progress, timeout: float) -> None:
    try:
        event: WorkerEvent = events.get(timeout=timeout) if timeout else events.get_nowait()
        while True:
            progress.event(event)
            event = events.get_nowait()
    except queue.Empty:
        return


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
