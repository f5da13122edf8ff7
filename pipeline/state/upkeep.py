"""Upkeep of a run folder by the process that holds its lock, before it runs or merges: what a
kill or damage left behind is removed, so that nothing stale is trusted.

- `.NAME.*.tmp`: an atomic write cut short (`.results.xlsx.*.tmp`: 28 MB at 200,000 rows);
- a result shard that cannot be opened (truncated, damaged): removed, so its shard is redone;
- a checkpoint older than its shard's result shard (a kill between writing the one and
  removing the other): dropped, so that it never masks the result's rows;
- `--fresh`: the run's state and its workbook, in an order that a kill cannot make lie.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.state.store import RunLayout


def remove_leftovers(layout: RunLayout) -> None:
    """Remove the temporary files of writes that a kill cut short (`.results.xlsx.*.tmp`: 28 MB
    at 200,000 rows). Only the holder of the run's lock may: others may be writing them."""
    for folder in (layout.root, layout.root / "shards", layout.input_dir, layout.results_dir):
        if folder.is_dir():
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)


def discard_run(layout: RunLayout, outputs: Sequence[Path] = ()) -> None:
    """Remove the run's state, and `outputs` (its workbook, exports) first: a discard cut
    short leaves run.json, so the next `--fresh` discards the rest, and never a workbook of
    the discarded run beside a new one."""
    for path in outputs:
        path.unlink(missing_ok=True)
    layout.run_file.unlink(missing_ok=True)
    shutil.rmtree(layout.root / "shards", ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        layout.answers_file.with_name(layout.answers_file.name + suffix).unlink(missing_ok=True)


def drop_stale_checkpoints(layout: RunLayout) -> None:
    """Remove checkpoints older than their shard's result shard: left by a kill between
    writing the result shard and removing the checkpoint. (A checkpoint newer than it is a
    `rerun-failed` cut short: its rows are the retried ones.)"""
    for name in layout.result_shards():
        checkpoint = layout.checkpoint(name)
        try:
            stale = checkpoint.stat().st_mtime_ns <= layout.result_shard(name).stat().st_mtime_ns
        except FileNotFoundError:
            continue
        if stale:
            checkpoint.unlink(missing_ok=True)


def remove_damaged_results(layout: RunLayout) -> list[tuple[str, str]]:
    """Remove result shards that cannot be read (a truncated or damaged file), so that their
    shards are redone; returns (name, what is wrong) for each."""
    damaged = []
    for name in layout.result_shards():
        path = layout.result_shard(name)
        try:
            pq.ParquetFile(path).close()
        except (OSError, pa.ArrowException) as exc:
            damaged.append((name, str(exc)))
            path.unlink(missing_ok=True)
    return damaged
