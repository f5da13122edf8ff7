"""What a view of a running run shows, as plain data: `Facts`.

The live view, the plain progress lines and `pipeline watch` all draw the same `Facts`: the
first two take them from the invocation's `RunStats` (`facts_of`), `watch` from the status file
the run rewrites about once a second (`Facts.record` there, `facts_from_record` here). One set
of figures, so a person watching from another terminal sees what the run's own terminal shows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline import schema
from pipeline.view.progress import ERROR_KINDS, RunSnapshot, RunStats, format_duration


@dataclass(frozen=True)
class WorkerLine:
    pid: int
    shard: str
    rows_done: int
    rows: int
    state: str


@dataclass(frozen=True)
class Facts:
    total: int = 0
    done: int = 0
    """Rows with an outcome, earlier invocations included."""
    counts: Mapping[str, int] = field(default_factory=dict)
    """This invocation's rows by final state."""
    errors: Mapping[str, int] = field(default_factory=dict)
    requests: int = 0
    retries: int = 0
    deduped: int = 0
    elapsed: float = 0.0
    """Seconds since this invocation started."""
    eta: float | None = None
    users_recent: float = 0.0
    """Users/s over the last 30 s (the ETA's rate)."""
    users_now: float = 0.0
    """Users/s over the last 5 s."""
    users_avg: float = 0.0
    requests_now: float = 0.0
    latency: tuple[float | None, float | None, float | None] = (None, None, None)
    """p50, p95, p99 in ms over the last `latency_window` answers."""
    latency_window: int = 0
    workers: tuple[WorkerLine, ...] = ()
    snapshot: RunSnapshot = field(default_factory=RunSnapshot)

    @property
    def percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    def record(self) -> dict[str, Any]:
        """The facts as JSON-ready data."""
        return asdict(self)


def facts_of(stats: RunStats) -> Facts:
    p50, p95, p99 = stats.recent_percentiles()
    return Facts(
        total=stats.total,
        done=stats.done,
        counts=dict(stats.figures.states),
        errors=dict(stats.figures.errors),
        requests=stats.figures.requests,
        retries=stats.figures.retries,
        deduped=stats.figures.deduped,
        elapsed=stats.elapsed,
        eta=stats.eta(),
        users_recent=stats.users.rate(),
        users_now=stats.users_now.rate(),
        users_avg=stats.average_rate(),
        requests_now=stats.request_rate.rate(),
        latency=(p50, p95, p99),
        latency_window=len(stats.latencies),
        workers=tuple(
            WorkerLine(w.pid, w.shard, w.shard_rows_done, w.shard_rows, w.state)
            for w in sorted(stats.workers.values(), key=lambda w: w.pid)
        ),
        snapshot=stats.snapshot,
    )


def facts_from_record(record: Mapping[str, Any]) -> Facts:
    """`Facts.record()` read back; unknown keys (a newer writer) are left out."""
    known = Facts.__dataclass_fields__
    values = {k: v for k, v in record.items() if k in known}
    snapshot = dict(values.get("snapshot") or {})
    snapshot["notes"] = tuple(snapshot.get("notes") or ())
    values["snapshot"] = RunSnapshot(
        **{k: v for k, v in snapshot.items() if k in RunSnapshot.__dataclass_fields__}
    )
    values["workers"] = tuple(WorkerLine(**w) for w in values.get("workers") or ())
    values["latency"] = tuple(values.get("latency") or (None, None, None))
    return Facts(**values)


def progress_line(f: Facts) -> str:
    """The plain progress line: `Progress: 1200/200000 users processed (0.6%) - ...`."""
    text = (
        f"Progress: {f.done}/{f.total} users processed ({f.percent:.1f}%)"
        f" - {f.users_recent:.1f} users/s - elapsed {format_duration(f.elapsed)}"
        f" - ETA {format_duration(f.eta) if f.eta is not None else '-'}"
    )
    states = ", ".join(f"{k} {f.counts[k]}" for k in schema.STATES if f.counts.get(k))
    if states:
        text += f" - {states}"
    if f.requests:
        text += f" - {f.requests_now:.1f} requests/s, retries {f.retries}"
    errors = ", ".join(f"{k} {f.errors[k]}" for k in error_kinds(f.errors))
    if errors:
        text += f" - errors: {errors}"
    p50, p95, _ = f.latency
    if p50 is not None and p95 is not None:
        text += f" - latency p50 {p50:.0f} ms, p95 {p95:.0f} ms"
    snap = f.snapshot
    if snap.held:
        text += " - paused by the operator (pipeline control resume)"
    elif snap.paused_for > 0:
        text += f" - paused ({snap.pause_reason}) for {format_duration(snap.paused_for)}"
    if snap.window:
        text += f" - {snap.window}"
    return text


def error_kinds(errors: Mapping[str, int]) -> list[str]:
    """The kinds with a count, in the order views list them (unknown kinds last, by name)."""
    kinds = [k for k in ERROR_KINDS if errors.get(k)]
    return kinds + sorted(k for k in errors if k not in ERROR_KINDS and errors[k])
