"""What crosses the process boundary: plain, picklable settings, tasks and reports.

The coordinator sends `WorkerSettings` (once per pool) and a `ShardTask` per shard to a worker
process; the worker answers with a `ShardReport`. Progress goes the other way as
`WorkerEvent`s (view/progress.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.api.client import Endpoint
from pipeline.run.reuse import CacheSettings
from pipeline.traffic.retry import RetryPolicy


@dataclass(frozen=True)
class WorkerSettings:
    endpoint: Endpoint
    policy: RetryPolicy
    threads: int
    """Threads in this process; each has its own Session."""
    root: Path
    """The run's output folder."""
    id_column: str
    mapping: tuple[tuple[str, tuple[str, ...]], ...]
    """API field -> input columns added up for it."""
    top_n: int
    dedupe: bool = True
    """Send identical request bodies once per run (state/answers.py)."""
    cache: CacheSettings | None = None
    """The answer store kept across runs (reuse.py); None: not used."""

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for _, columns in self.mapping for c in columns))


@dataclass(frozen=True)
class ShardTask:
    name: str
    retry_failed: bool = False
    """Keep the shard's existing outcomes and request only its `failed` rows again."""


@dataclass(frozen=True)
class ShardReport:
    name: str
    finished: bool
    counts: dict[str, int] = field(default_factory=dict)
    """Rows by final state; only for a finished shard."""
    requests: int = 0
    retried_rows: int = 0
    """Rows requested in this invocation (for rerun-failed: the failed rows retried)."""
    recovered: int = 0
    """Of those, rows that ended ok or no_cards."""
    refused: str = ""
    """Why the API refuses the run, if this shard found that it does (traffic/refusal.py)."""
