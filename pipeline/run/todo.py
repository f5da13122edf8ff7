"""The shards an invocation runs, and how many rows they leave to do.

Every input shard without a result is run; `rerun-failed` adds the finished shards that hold
failed rows. The rows left to do start the progress view (checkpointed rows count as done).
"""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq

from pipeline import schema
from pipeline.merge import read_outcome_counts
from pipeline.run.tasks import ShardTask
from pipeline.state.store import RunLayout, read_checkpoint


def shards_to_do(layout: RunLayout, retry_failed: bool) -> list[ShardTask]:
    finished = set(layout.result_shards())
    tasks = [ShardTask(name) for name in layout.input_shards() if name not in finished]
    if retry_failed:
        for name in layout.result_shards():
            counts = read_outcome_counts([layout.result_shard(name)])
            if counts.get(schema.FAILED):
                tasks.append(ShardTask(name, retry_failed=True))
        tasks.sort(key=lambda t: layout.shard_index(t.name))  # input order: dedupe needs it
    return tasks


def rows_to_do(layout: RunLayout, tasks: list[ShardTask], info: dict[str, Any]) -> int:
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
