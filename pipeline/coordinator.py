"""The run's life cycle: fingerprint, sharding, the worker pool, events, signals, merge.

The coordinator is the only process that owns global things: the shared limits, the progress
view, the signals and the run folder's `run.json`. Workers get plain settings and shard names
(see worker.py) and report back through an events queue and their `ShardReport`s.

`processes = 1` runs the shards in this process, one at a time on a single background thread
(the same interface as the process pool), which is the way to debug a run.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import Any

from pipeline import runinfo, schema, worker
from pipeline.client import Endpoint, partner_urls
from pipeline.config import Config
from pipeline.errors import (
    EXIT_FAILED_ROWS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    PipelineError,
    RunStateError,
)
from pipeline.merge import read_outcome_counts
from pipeline.progress import LogProgress, NullProgress, Progress
from pipeline.ratelimit import SharedLimits
from pipeline.retry import RetryPolicy
from pipeline.shard import shard_input
from pipeline.store import RunLayout, changed_keys, read_run, write_json_atomic

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class RunOptions:
    fresh: bool = False
    """Discard the state in the output folder and start over."""
    merge: bool = True
    limit: int | None = None
    """Only the first N input rows (a trial run with its own fingerprint)."""
    retry_failed: bool = False
    """`rerun-failed`: request only rows that ended `failed`, and unfinished shards."""
    progress: str = "log"
    """"log" (plain lines), "none"."""


def run(config: Config, options: RunOptions) -> int:
    """`pipeline run` and `pipeline rerun-failed`; returns the exit code."""
    layout = RunLayout(config.output.dir)
    with runinfo.file_log(layout):
        info = _prepare(config, options, layout)
        tasks = _tasks(layout, options.retry_failed)
        started = time.monotonic()
        interrupted = False
        if tasks:
            log.info("Requesting %d shard(s): %s", len(tasks), _settings_line(config))
            with _endpoint(config) as endpoint:
                interrupted = not _execute(config, layout, endpoint, tasks, info, options.progress)
        else:
            log.info("Nothing to request: every shard of %s is finished.", layout.root)
        info = runinfo.record_session(
            layout, info, time.monotonic() - started, finished=not interrupted
        )
        if interrupted:
            log.warning(
                "Interrupted: state saved in %s; run the same command again to resume.", layout.root
            )
            return EXIT_INTERRUPTED
        if options.merge:
            runinfo.merge_run(config, layout)
        counts = read_outcome_counts([layout.result_shard(n) for n in layout.result_shards()])
        return EXIT_FAILED_ROWS if counts.get(schema.FAILED) else EXIT_OK


def _prepare(config: Config, options: RunOptions, layout: RunLayout) -> dict[str, Any]:
    """Check the folder's run against this one; shard the input if not done. Returns run.json."""
    fingerprint = runinfo.fingerprint(config, options.limit)
    if options.fresh and not options.retry_failed:
        _discard(layout)
    info = read_run(layout)
    if info is not None:
        changes = changed_keys(info.get("fingerprint"), fingerprint)
        if changes:
            raise RunStateError(
                f"{layout.root} holds a run of other settings ({', '.join(changes)} changed); "
                "use --fresh to start over or --out for another folder"
            )
    elif options.retry_failed:
        raise RunStateError(f"{layout.root}: no run to retry here; start one with `pipeline run`")
    if info is None or not info.get("input", {}).get("sharded"):
        info = _shard(config, options, layout, fingerprint)
    return info


def _discard(layout: RunLayout) -> None:
    shutil.rmtree(layout.root / "shards", ignore_errors=True)
    layout.run_file.unlink(missing_ok=True)


def _shard(
    config: Config, options: RunOptions, layout: RunLayout, fingerprint: dict[str, Any]
) -> dict[str, Any]:
    shutil.rmtree(layout.input_dir, ignore_errors=True)  # a sharding cut short starts again
    info = runinfo.new_run(config, fingerprint)
    write_json_atomic(layout.run_file, info)
    started = time.monotonic()
    report = shard_input(
        config.input.path,
        layout=layout,
        id_column=config.input.id_column,
        value_columns=config.value_columns,
        shard_size=config.processing.shard_size,
        sheet=config.input.sheet or None,
        limit=options.limit,
    )
    log.info(
        "Sharded %s: %d rows (%d invalid) into %d shard(s) in %.1fs",
        config.input.path,
        report.rows,
        report.invalid,
        len(report.shards),
        time.monotonic() - started,
    )
    info["input"] = {
        "sharded": True,
        "rows": report.rows,
        "invalid": report.invalid,
        "shards": len(report.shards),
    }
    write_json_atomic(layout.run_file, info)
    return info


def _tasks(layout: RunLayout, retry_failed: bool) -> list[worker.ShardTask]:
    finished = set(layout.result_shards())
    tasks = [worker.ShardTask(name) for name in layout.input_shards() if name not in finished]
    if retry_failed:
        for name in sorted(finished):
            counts = read_outcome_counts([layout.result_shard(name)])
            if counts.get(schema.FAILED):
                tasks.append(worker.ShardTask(name, retry_failed=True))
        tasks.sort(key=lambda t: t.name)
    return tasks


@contextlib.contextmanager
def _endpoint(config: Config) -> Iterator[Endpoint]:
    """The endpoint to call; with `[api] mock = true`, a mock API started for the run."""
    api = config.api
    key = os.environ.get(api.key_env, "")
    verify: str | bool = api.ca_bundle or True
    with contextlib.ExitStack() as stack:
        url = api.url
        if api.mock:
            from pipeline import mockapi

            settings = runinfo.mock_settings(config)
            mock = stack.enter_context(mockapi.start_mock_process(settings))
            url = mock.base_url + "/cg/api/pro"
            key = key or settings.api_key
            log.info("Started the mock CardGenius API on %s", mock.base_url)
        token_url = ""
        if api.auth == "partner-token":
            if not key:
                raise ConfigError(f"[api] key_env: environment variable {api.key_env} is not set")
            url, token_url = partner_urls(url)
        yield Endpoint(
            url=url,
            auth=api.auth,
            token_url=token_url,
            api_key=key,
            timeout=api.timeout,
            connect_timeout=api.connect_timeout,
            verify=verify,
        )


def _execute(
    config: Config,
    layout: RunLayout,
    endpoint: Endpoint,
    tasks: list[worker.ShardTask],
    info: dict[str, Any],
    progress_mode: str,
) -> bool:
    """Run the shards; False when interrupted."""
    processes = min(config.processing.processes, len(tasks))
    # Each process gets threads for the whole budget; the shared in-flight cap holds the run
    # to max_workers. So a process left alone at the end of a run still uses all of it.
    threads = config.processing.max_workers
    settings = worker.WorkerSettings(
        endpoint=endpoint,
        policy=RetryPolicy(
            max_attempts=config.retry.max_attempts,
            backoff_initial=config.retry.backoff_initial,
            backoff_max=config.retry.backoff_max,
            retry_after_max=config.retry.retry_after_max,
        ),
        threads=threads,
        root=layout.root,
        id_column=config.input.id_column,
        mapping=tuple(config.request.items()),
        top_n=config.output.top_n,
    )
    ctx = multiprocessing.get_context("spawn")
    limits = SharedLimits(ctx, config.processing.rate_limit, config.processing.max_workers)
    if processes > 1:
        events: Any = ctx.Queue()
        stop: Any = ctx.Event()
        executor: Executor = ProcessPoolExecutor(
            processes,
            mp_context=ctx,
            initializer=worker.init_process,
            initargs=(settings, limits, events, stop),
        )
    else:
        events, stop = queue.Queue(), threading.Event()
        worker.init_local(settings, limits, events, stop)
        executor = ThreadPoolExecutor(1, thread_name_prefix="shard")
    progress: Progress = LogProgress(log) if progress_mode == "log" else NullProgress()
    total = int(info["input"]["rows"])
    done_before = _rows_done(layout, tasks)
    progress.start(total, done_before)
    with _signals(stop), executor:
        futures = [executor.submit(worker.run_shard, task) for task in tasks]
        reports = _collect(futures, events, progress, stop)
    progress.finish()
    return not stop.is_set() and all(r.finished for r in reports)


def _rows_done(layout: RunLayout, tasks: list[worker.ShardTask]) -> int:
    todo = {t.name for t in tasks}
    names = [n for n in layout.result_shards() if n not in todo]
    return sum(read_outcome_counts([layout.result_shard(n) for n in names]).values())


def _collect(
    futures: list[Future[worker.ShardReport]], events: Any, progress: Progress, stop: Any
) -> list[worker.ShardReport]:
    """Feed events to the progress view until every shard's future is done."""
    while not all(f.done() for f in futures):
        _drain(events, progress, timeout=0.2)
        progress.tick()
    _drain(events, progress, timeout=0.0)
    reports = []
    for future in futures:
        try:
            reports.append(future.result())
        except Exception as exc:
            stop.set()
            raise PipelineError(f"a worker failed: {type(exc).__name__}: {exc}") from exc
    return reports


def _drain(events: Any, progress: Progress, timeout: float) -> None:
    try:
        event = events.get(timeout=timeout) if timeout else events.get_nowait()
        while True:
            progress.advance(event["counts"])
            event = events.get_nowait()
    except queue.Empty:
        return


@contextlib.contextmanager
def _signals(stop: Any) -> Iterator[None]:
    """First Ctrl+C / SIGTERM: stop dispatching and let in-flight requests end. Second: exit."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("Second interrupt: exiting now; rerun to resume.")
            os._exit(EXIT_INTERRUPTED)
        log.warning("Stopping: finishing in-flight requests (Ctrl+C again to exit at once)...")
        stop.set()

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _settings_line(config: Config) -> str:
    p = config.processing
    rate = f"{p.rate_limit:g}/s" if p.rate_limit else "unlimited"
    return f"{p.processes} process(es), {p.max_workers} in flight, rate {rate}"
