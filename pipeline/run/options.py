"""What `pipeline run` and `pipeline rerun-failed` ask of one invocation, beside the config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
