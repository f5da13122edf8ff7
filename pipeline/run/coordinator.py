"""The run's life cycle: lock, folder, the shards to do, the pool, the end, the merge.

The coordinator is the only process that owns global things: the run folder's lock and
`run.json`, the shared limits and the progress view (through `pool.ShardPool`), and the exit
code. Workers get plain settings and shard names and report back through events and their
`ShardReport`s. Its parts: prepare.py (the folder made ready: checks, fingerprint,
sharding), todo.py (the shards to run), ending.py (how the requests ended, and the exit code).
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from pipeline import schema
from pipeline.api.client import Endpoint
from pipeline.api.endpoint import open_endpoint
from pipeline.config import Config, cache_dir
from pipeline.errors import EXIT_FAILED_ROWS, EXIT_OK, RunStateError
from pipeline.merge import read_outcome_counts
from pipeline.merge.run import merge_run
from pipeline.ops.notify import webhook_url
from pipeline.ops.operations import Operations, metrics_server
from pipeline.run.ending import Ending, stop_code
from pipeline.run.options import RunOptions
from pipeline.run.pool import PoolResult, ShardPool
from pipeline.run.prepare import Checked, preflight, prepare
from pipeline.run.tasks import ShardTask
from pipeline.run.todo import rows_to_do, shards_to_do
from pipeline.state import runinfo
from pipeline.state.cache import STORE_FILE, ensure_store
from pipeline.state.folder import Undo, undo_on_refusal
from pipeline.state.lock import RunLock, run_lock
from pipeline.state.store import RunLayout, read_run
from pipeline.view.liveview import (
    ConsoleLogHandler,
    LiveProgress,
    summary_facts,
    summary_table,
    top_cards_table,
)
from pipeline.view.progress import LogProgress, NullProgress, Progress

__all__ = ["RunOptions", "run"]

log = logging.getLogger("pipeline")
TOP_CARDS_SHOWN = 5
"""Best cards listed under the run's table at its end."""
SIMULATED = "SIMULATED answers: the embedded mock API answers this run, not the partner's"
"""Said by the live view's title and the log's first lines whenever `[api] mock` is on."""


def run(config: Config, options: RunOptions) -> int:
    """`pipeline run` and `pipeline rerun-failed`; returns the exit code.

    The operating side (status file, `pipeline control`, notifications, metrics) wraps the
    run; the webhook and the metrics port are checked before the folder is touched. A usage,
    config or input error (exit 2) leaves the output folder as it was: what can be checked
    without writing is checked first, and whatever the preparation wrote before it was
    refused (run.json, input shards, the lock, the log) is removed again.
    """
    layout = RunLayout(config.output.dir)
    if options.retry_failed and read_run(layout) is None:  # before the lock makes the folder
        raise RunStateError(f"{layout.root}: no run to retry here; start one with `pipeline run`")
    # Before anything is written: made once here, as workers starting together must not race
    # to switch it to WAL; an unusable [cache] path stops the run with one line.
    ensure_store(cache_dir(config) / STORE_FILE)
    webhook = webhook_url(config.notify)
    checked = preflight(config, options, layout)
    with (
        metrics_server(config.metrics) as metrics,
        undo_on_refusal(layout.root) as undo,
        run_lock(layout) as lock,
        runinfo.file_log(layout),
    ):
        ops = Operations(config, layout, webhook, metrics)
        return ops.ended(_run(config, options, layout, ops, (checked, undo), lock))


def _run(
    config: Config,
    options: RunOptions,
    layout: RunLayout,
    ops: Operations,
    prepared: tuple[Checked, Undo],
    lock: RunLock,
) -> int:
    checked, undo = prepared
    # The workers start first (the pool): they import their modules while this process shards.
    with ops.watching(), ShardPool(config, layout) as pool:
        if config.api.mock:
            log.warning("%s ([api] mock = true; set it to false to call [api] url).", SIMULATED)
        info = prepare(config, options, layout, checked)
        undo.disarm()  # from here on the folder holds a run worth keeping
        return _request(config, options, layout, pool, info, ops, lock)


def _request(
    config: Config,
    options: RunOptions,
    layout: RunLayout,
    pool: ShardPool,
    info: dict[str, Any],
    ops: Operations,
    lock: RunLock,
) -> int:
    """Run the shards left to do, record the invocation, merge; the exit code."""
    tasks = shards_to_do(layout, options.retry_failed)
    started = time.monotonic()
    ending = Ending()
    if tasks:
        ending = _send(config, options, pool, tasks, info, ops, lock)
    else:
        log.info("Nothing to request: every shard of %s is finished.", layout.root)
    pool.close()  # the workers exit while the invocation is recorded and merged
    runinfo.record_invocation(
        layout, time.monotonic() - started, finished=not ending.interrupted, worked=bool(tasks)
    )
    stopped = stop_code(ending, layout.root, config.retry.give_up_after, options.retry_failed)
    if stopped is not None:
        return stopped
    if options.compare_with is not None:
        _compare(options.compare_with, layout, options.min_change)
    if options.merge:
        merge_run(config, layout)
    counts = read_outcome_counts(layout.result_shard_paths())
    ops.counted(counts)  # the `finished` message says them without reading the shards again
    return EXIT_FAILED_ROWS if counts.get(schema.FAILED) else EXIT_OK


def _send(
    config: Config,
    options: RunOptions,
    pool: ShardPool,
    tasks: list[ShardTask],
    info: dict[str, Any],
    ops: Operations,
    lock: RunLock,
) -> Ending:
    """Request the tasks' rows on the pool; how it ended."""
    log.info("Requesting %d shard(s): %s", len(tasks), _settings_line(config))
    if options.merge:
        _preload_merge()
    with open_endpoint(config) as endpoint:
        title = SIMULATED if config.api.mock else ""
        result = _execute(pool, endpoint, tasks, info, options, ops, title, lock)
    if options.retry_failed:
        retried = sum(r.retried_rows for r in result.reports)
        recovered = sum(r.recovered for r in result.reports)
        log.info("Retried %d row(s); %d recovered.", retried, recovered)
    return Ending.of(result)


def _compare(old: Path, layout: RunLayout, min_change: float) -> None:
    from pipeline.compare import compare_runs

    found = compare_runs(old, layout.root, min_change)
    counts = ", ".join(f"{kind} {n:,}" for kind, n in found.counts.items())
    log.info("Changes since %s: %s", old, counts)


def _preload_merge() -> None:
    """Import the workbook writer (openpyxl: ~0.25 s) on a thread while the workers run,
    instead of after the last request, when the user is waiting for the workbook."""

    def load() -> None:
        import pipeline.merge.workbook  # noqa: F401

    threading.Thread(target=load, name="preload-merge", daemon=True).start()


def _execute(
    pool: ShardPool,
    endpoint: Endpoint,
    tasks: list[ShardTask],
    info: dict[str, Any],
    options: RunOptions,
    ops: Operations,
    title: str,
    lock: RunLock,
) -> PoolResult:
    """Run the tasks with the chosen progress view; record this invocation's summary."""
    total, layout = int(info["input"]["rows"]), pool.layout
    with _progress(options.progress, title) as (view, console):
        progress = ops.observe(view, int(info["input"]["shards"]), len(tasks))
        progress.start(total, total - rows_to_do(layout, tasks, info))
        try:
            result = pool.run(
                endpoint, tasks, progress, ops.control, options.answers, lost=lock.lost
            )
        finally:
            progress.finish()
    stats = getattr(view, "stats", None)
    if stats is not None:
        console.print(summary_table(stats))
        runinfo.record_summary(layout, summary_facts(stats))
        _print_top_cards(console, layout)
    return result


def _print_top_cards(console: Console, layout: RunLayout) -> None:
    """The run's five most frequent best cards, from every result shard (those finished before
    this resume too), under this invocation's table."""
    from pipeline.merge.insights import top_cards

    try:
        cards = top_cards(layout.result_shard_paths(), TOP_CARDS_SHOWN)
    except RunStateError as exc:  # a nicety: the merge reports a bad shard where it matters
        log.warning("Best cards not listed: %s", exc)
        return
    if cards:
        console.print(top_cards_table(cards))


@contextlib.contextmanager
def _progress(mode: str, title: str = "") -> Iterator[tuple[Progress, Console]]:
    """The view: "live" (rich, on a terminal), "log" (plain lines) or "none". While the live
    view runs, log lines are printed through its console so they do not tear the frame."""
    if mode == "none":
        yield NullProgress(), Console(file=io.StringIO())
        return
    if mode == "log":
        yield LogProgress(log), Console(stderr=True)
        return
    console = Console()
    handler = ConsoleLogHandler(console)
    handler.setFormatter(logging.Formatter("%(message)s"))
    plain = [h for h in log.handlers if h.get_name() == "console"]
    for h in plain:
        log.removeHandler(h)
    log.addHandler(handler)
    try:
        yield LiveProgress(console, title=title), console
    finally:
        log.removeHandler(handler)
        for h in plain:
            log.addHandler(h)


def _settings_line(config: Config) -> str:
    p = config.processing
    rate = f"{p.rate_limit:g}/s" if p.rate_limit else "unlimited"
    return f"{p.processes} process(es), {p.max_workers} in flight, rate {rate}"
