"""`pipeline status`: what a run folder holds, read from its files alone.

Works on any run folder, even one whose run was killed: shards are pending until their result
shard exists; rows are counted by state from the result shards; errors are grouped by kind
(the `error_kind` column; for result shards written before it existed, read from the message).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline import schema
from pipeline.api.classify import status_kind
from pipeline.config import Config
from pipeline.errors import ErrorKind
from pipeline.state.lock import holder
from pipeline.state.store import (
    RunLayout,
    parquet_columns,
    read_checkpoint,
    read_parquet,
    read_run,
)


def collect(config: Config) -> dict[str, Any]:
    """The facts `status` shows, as one JSON-ready dict."""
    layout = RunLayout(config.output.dir)
    info = read_run(layout)
    pid = holder(layout)
    if info is None:
        facts = {"folder": str(layout.root), "run": False, "running_pid": pid}
        return {**facts, "next": _next_step(False, [], Counter(), pid)}
    inputs = layout.input_shards()
    finished = set(layout.result_shards())
    states: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    damaged = []
    for name in layout.result_shards():
        try:
            _count_shard(layout.result_shard(name), states, errors)
        except (OSError, pa.ArrowException):
            damaged.append(name)
            finished.discard(name)
    rows = info.get("input", {}).get("rows")
    sharded = bool(info.get("input", {}).get("sharded"))
    pending = [n for n in inputs if n not in finished]
    checkpointed = sum(len(read_checkpoint(layout.checkpoint(n), schema.ROW)) for n in pending)
    return {
        "folder": str(layout.root),
        "run": True,
        "running_pid": pid,
        "input": info.get("fingerprint", {}).get("input", {}).get("path"),
        "started_at": info.get("started_at"),
        "finished_at": info.get("finished_at"),
        "sharded": sharded,
        "rows": rows,
        "shards": {"total": len(inputs), "finished": len(finished), "pending": len(pending)},
        "rows_by_state": {s: states.get(s, 0) for s in schema.STATES},
        "rows_pending": (rows - sum(states.values())) if rows is not None else None,
        "rows_checkpointed": checkpointed,
        "errors_by_kind": dict(errors.most_common()),
        "damaged_shards": damaged,
        "next": _next_step(sharded, pending, states, pid),
    }


def _count_shard(path: Path, states: Counter[str], errors: Counter[str]) -> None:
    """Add a result shard's rows by state, and its failures by kind, to the counts."""
    wanted = [schema.STATUS, schema.HTTP_STATUS, schema.ERROR, schema.ERROR_KIND]
    cols = read_parquet(path, [c for c in wanted if c in parquet_columns(path)]).to_pydict()
    rows = len(cols[schema.STATUS])
    kinds = cols.get(schema.ERROR_KIND, [None] * rows)
    for i, state in enumerate(cols[schema.STATUS]):
        states[state] += 1
        if state == schema.INVALID_STATE:
            errors["invalid_input"] += 1
        elif state == schema.FAILED:
            kind = kinds[i] or _kind_from_message(
                cols[schema.HTTP_STATUS][i], cols[schema.ERROR][i]
            )
            errors[kind] += 1


def _kind_from_message(http_status: int | None, message: str | None) -> str:
    """The kind of an error recorded before result shards had `error_kind`, from its message
    as the client wrote it then."""
    text = message or ""
    kind = ErrorKind.OTHER if http_status is None else status_kind(http_status)
    if text.startswith("timeout"):
        kind = ErrorKind.TIMEOUT
    elif text.startswith("connection error"):
        kind = ErrorKind.CONNECTION
    elif text.startswith("bad body"):
        kind = ErrorKind.BAD_BODY
    return str(kind.value)


def _next_step(sharded: bool, pending: list[str], states: Counter[str], pid: int | None) -> str:
    if pid is not None:
        return f"a run is in progress (pid {pid}); wait for it or stop it"
    if not sharded:
        return "pipeline run shards the input again and starts requesting"
    if pending:
        return f"pipeline run resumes: {len(pending)} shard(s) to request (damaged ones again)"
    if states.get(schema.FAILED):
        return f"pipeline rerun-failed requests {states[schema.FAILED]} failed row(s) again"
    return "nothing to do: the run is finished (pipeline merge rewrites the workbook)"


def render(facts: dict[str, Any]) -> str:
    """`collect`'s facts as a few lines for a person."""
    if not facts["run"]:
        return f"{facts['folder']}: no run recorded; {facts['next']}."
    shards = facts["shards"]
    running = f", in progress (pid {facts['running_pid']})" if facts["running_pid"] else ""
    lines = [
        f"Run in {facts['folder']} (input {facts['input']}){running}",
        f"  started {facts['started_at']}, finished {facts['finished_at'] or '-'}",
        f"  shards: {shards['finished']}/{shards['total']} finished, {shards['pending']} pending",
        "  rows:   "
        + ", ".join(f"{s} {n}" for s, n in facts["rows_by_state"].items())
        + (f", pending {facts['rows_pending']}" if facts["rows_pending"] else "")
        + (
            f" ({facts['rows_checkpointed']} of them saved by checkpoints)"
            if facts["rows_checkpointed"]
            else ""
        ),
    ]
    if facts["errors_by_kind"]:
        lines.append(
            "  errors: " + ", ".join(f"{k} {n}" for k, n in facts["errors_by_kind"].items())
        )
    if facts["damaged_shards"]:
        lines.append(f"  damaged result shards: {', '.join(facts['damaged_shards'])}")
    lines.append(f"  next:   {facts['next']}")
    return "\n".join(lines)
