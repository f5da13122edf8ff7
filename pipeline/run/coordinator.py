"""The run's life cycle: lock, fingerprint, sharding, the shards to do, the pool, merge.

The coordinator is the only process that owns global things: the run folder's lock and
`run.json`, the shared limits and the progress view (through `pool.ShardPool`), and the exit
code. Workers get plain settings and shard names and report back through events and their
`ShardReport`s.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.console import Console

from pipeline import schema
from pipeline.api.client import Endpoint
from pipeline.api.endpoint import check_key, open_endpoint
from pipeline.config import Config, cache_dir
from pipeline.errors import (
    EXIT_FAILED_ROWS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_OUTAGE,
    RefusedError,
    RunStateError,
)
from pipeline.merge import read_outcome_counts
from pipeline.merge.run import merge_run
from pipeline.ops.notify import webhook_url
from pipeline.ops.operations import Operations, metrics_server
from pipeline.run.pool import PoolResult, ShardPool
from pipeline.run.tasks import ShardTask
from pipeline.state import runinfo
from pipeline.state.answers import find_repeated
from pipeline.state.cache import STORE_FILE, ensure_store
from pipeline.state.folder import Undo, check_folder, undo_on_refusal
from pipeline.state.lock import RunLock, run_lock
from pipeline.state.store import (
    RunLayout,
    changed_keys,
    read_checkpoint,
    read_run,
    write_json_atomic,
)
from pipeline.state.upkeep import (
    discard_run,
    drop_stale_checkpoints,
    remove_damaged_results,
)
from pipeline.view.liveview import (
    ConsoleLogHandler,
    LiveProgress,
    summary_facts,
    summary_table,
    top_cards_table,
)
from pipeline.view.progress import LogProgress, NullProgress, Progress

log = logging.getLogger("pipeline")
TOP_CARDS_SHOWN = 5
"""Best cards listed under the run's table at its end."""
SIMULATED = "SIMULATED answers: the embedded mock API answers this run, not the partner's"
"""Said by the live view's title and the log's first lines whenever `[api] mock` is on."""


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
    """"live" (the rich view, for a terminal), "log" (plain lines) or "none"."""
    answers: str = "reuse"
    """The answer store: "reuse" (answers younger than max_age), "refresh" (request every row
    again, store the answers) or "offline" (answers from the store only, send nothing)."""
    compare_with: Path | None = None
    """An older run's folder: write what changed since it (compare.py) before the merge."""
    min_change: float = 100.0


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
    checked = _preflight(config, options, layout)
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
    prepared: tuple[tuple[dict[str, Any] | None, dict[str, Any]], Undo],
    lock: RunLock,
) -> int:
    checked, undo = prepared
    # The workers start first (the pool): they import their modules while this process shards.
    with ops.watching(), ShardPool(config, layout) as pool:
        if config.api.mock:
            log.warning("%s ([api] mock = true; set it to false to call [api] url).", SIMULATED)
        info = _prepare(config, options, layout, checked)
        undo.disarm()  # from here on the folder holds a run worth keeping
        return _request(config, options, layout, pool, info, ops, lock)


def _preflight(
    config: Config, options: RunOptions, layout: RunLayout
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """What can be refused before anything is written: the folder, the input's columns, a
    run of other settings in the folder. Returns `_check_run`'s answer."""
    from pipeline.inputs.shard import check_input  # polars: see _shard

    check_folder(layout.root)
    check_key(config)
    check_input(
        config.input.path, config.input.id_column, config.value_columns, config.input.sheet or None
    )
    return _check_run(config, options, layout)


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
    tasks = _tasks(layout, options.retry_failed)
    started = time.monotonic()
    interrupted = outage = False
    refused = ""
    if tasks:
        log.info("Requesting %d shard(s): %s", len(tasks), _settings_line(config))
        if options.merge:
            _preload_merge()
        with open_endpoint(config) as endpoint:
            title = SIMULATED if config.api.mock else ""
            result = _execute(pool, endpoint, tasks, info, options, ops, title, lock)
        interrupted = result.interrupted or not all(r.finished for r in result.reports)
        outage, refused = result.outage, result.refused
        if options.retry_failed:
            retried = sum(r.retried_rows for r in result.reports)
            recovered = sum(r.recovered for r in result.reports)
            log.info("Retried %d row(s); %d recovered.", retried, recovered)
    else:
        log.info("Nothing to request: every shard of %s is finished.", layout.root)
    pool.close()  # the workers exit while the invocation is recorded and merged
    runinfo.record_invocation(
        layout, time.monotonic() - started, finished=not interrupted, worked=bool(tasks)
    )
    if refused:
        raise RefusedError(
            f"{refused}. No row was marked failed, and the finished ones are saved in "
            f"{layout.root}: fix this, then run the same command again to go on"
        )
    if outage:
        log.error(
            "Stopped: the API stayed unavailable for longer than [retry] give_up_after "
            "(%g s). Finished rows are saved in %s; run the same command again to resume.",
            config.retry.give_up_after,
            layout.root,
        )
        return EXIT_OUTAGE
    if interrupted:
        command = "pipeline rerun-failed" if options.retry_failed else "pipeline run"
        log.warning(
            "Interrupted: finished rows are saved in %s; run `%s` with the same settings to "
            "resume.",
            layout.root,
            command,
        )
        return EXIT_INTERRUPTED
    if options.compare_with is not None:
        _compare(options.compare_with, layout, options.min_change)
    if options.merge:
        merge_run(config, layout)
    counts = read_outcome_counts(layout.result_shard_paths())
    ops.counted(counts)  # the `finished` message says them without reading the shards again
    return EXIT_FAILED_ROWS if counts.get(schema.FAILED) else EXIT_OK


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


def _check_run(
    config: Config, options: RunOptions, layout: RunLayout
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(the folder's run.json or None, this run's fingerprint); refuses a run of other
    settings, and `rerun-failed` without a run. Reads only."""
    info = None if options.fresh and not options.retry_failed else read_run(layout)
    fingerprint = runinfo.fingerprint(config, options.limit, info)
    if info is not None:
        changes = changed_keys(info.get("fingerprint"), fingerprint)
        if changes:
            raise RunStateError(
                f"{layout.root} holds a run of other settings ({', '.join(changes)} changed); "
                "use --fresh to start over or --out for another folder"
            )
    elif options.retry_failed:
        raise RunStateError(f"{layout.root}: no run to retry here; start one with `pipeline run`")
    return info, fingerprint


def _prepare(
    config: Config,
    options: RunOptions,
    layout: RunLayout,
    checked: tuple[dict[str, Any] | None, dict[str, Any]],
) -> dict[str, Any]:
    """Shard the input if not done; returns run.json. `checked` is `_check_run`'s answer
    before the lock was taken; it is asked again if another run changed the folder since."""
    if options.fresh and not options.retry_failed:
        discard_run(layout, _outputs(config, layout))
    info, fingerprint = checked
    if read_run(layout) != info:
        info, fingerprint = _check_run(config, options, layout)
    if info is None:
        discard_run(layout)  # shards or answers without a run.json belong to no known run
    if info is None or not info.get("input", {}).get("sharded"):
        info = _shard(config, options, layout, fingerprint)
    else:
        info = runinfo.record_settings(layout, config, _kept_shard_size(config, info))
    for name, problem in remove_damaged_results(layout):
        log.warning("Result shard %s was damaged (%s): its shard is done again.", name, problem)
    drop_stale_checkpoints(layout)
    return info


def _outputs(config: Config, layout: RunLayout) -> list[Path]:
    """The files a merge writes: the workbook and the exports named like it."""
    workbook = layout.root / config.output.excel
    return [workbook, workbook.with_suffix(".parquet"), workbook.with_suffix(".csv")]


def _kept_shard_size(config: Config, info: dict[str, Any]) -> int:
    """A resume keeps the run's shards: another shard size is said, not silently dropped."""
    kept = int(info["input"].get("shard_size") or config.processing.shard_size)
    if kept != config.processing.shard_size:
        log.warning(
            "Shard size %d is ignored: this run was sharded by %d rows and resumes so "
            "(--fresh starts over with the new size).",
            config.processing.shard_size,
            kept,
        )
    return kept


def _shard(
    config: Config, options: RunOptions, layout: RunLayout, fingerprint: dict[str, Any]
) -> dict[str, Any]:
    # Imported here, after the workers have been started: polars takes ~0.1 s to import.
    from pipeline.inputs.shard import shard_input

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
    unique, repeated = find_repeated(
        [layout.input_shard(n) for n in report.shards],
        tuple(config.request.items()),
        layout.repeated_file,
    )
    log.info(
        "Sharded %s: %d rows (%d invalid, %d distinct request bodies) into %d shard(s) in %.1fs",
        config.input.path,
        report.rows,
        report.invalid,
        unique,
        len(report.shards),
        time.monotonic() - started,
    )
    info["input"] = {
        "sharded": True,
        "shard_size": config.processing.shard_size,
        "rows": report.rows,
        "invalid": report.invalid,
        "shards": len(report.shards),
        "unique_bodies": unique,
        "repeated_bodies": repeated,
    }
    write_json_atomic(layout.run_file, info)
    return info


def _tasks(layout: RunLayout, retry_failed: bool) -> list[ShardTask]:
    finished = set(layout.result_shards())
    tasks = [ShardTask(name) for name in layout.input_shards() if name not in finished]
    if retry_failed:
        for name in layout.result_shards():
            counts = read_outcome_counts([layout.result_shard(name)])
            if counts.get(schema.FAILED):
                tasks.append(ShardTask(name, retry_failed=True))
        tasks.sort(key=lambda t: layout.shard_index(t.name))  # input order: dedupe needs it
    return tasks


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
        progress.start(total, total - _rows_to_do(layout, tasks, info))
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


def _rows_to_do(layout: RunLayout, tasks: list[ShardTask], info: dict[str, Any]) -> int:
    """Rows of these tasks without an outcome yet (checkpointed rows count as done).

    Shard sizes come from run.json, not from opening each shard: a resume of 2,000 shards
    should not read 2,000 files before it starts.
    """
    total, size = int(info["input"]["rows"]), info["input"].get("shard_size")
    todo = 0
    for task in tasks:
        if task.retry_failed:
            counts = read_outcome_counts([layout.result_shard(task.name)])
            rows = counts.get(schema.FAILED, 0)
        elif size:
            rows = min(int(size), total - layout.shard_index(task.name) * int(size))
        else:
            rows = pq.ParquetFile(layout.input_shard(task.name)).metadata.num_rows
        todo += rows - len(read_checkpoint(layout.checkpoint(task.name), schema.ROW))
    return max(0, todo)


def _settings_line(config: Config) -> str:
    p = config.processing
    rate = f"{p.rate_limit:g}/s" if p.rate_limit else "unlimited"
    return f"{p.processes} process(es), {p.max_workers} in flight, rate {rate}"
