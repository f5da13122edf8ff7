"""Checkpoint batching: when the outcomes finished since the last batch are written.

Outcomes are appended to the shard's checkpoint in small flushed batches, every
`CHECKPOINT_ROWS` rows or `CHECKPOINT_SECONDS`, whichever comes first: a killed run repeats
only the rows in flight or in the last batch, and the disk sees a few writes a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pipeline.run.timers import Every

CHECKPOINT_ROWS = 50
CHECKPOINT_SECONDS = 1.0


class CheckpointBatch:
    """Outcomes not yet checkpointed (not thread-safe: the shard's lock guards it)."""

    def __init__(
        self,
        rows: int = CHECKPOINT_ROWS,
        seconds: float = CHECKPOINT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rows = rows
        self.unsaved: list[dict[str, Any]] = []
        self.timer = Every(seconds, clock)

    def add(self, outcome: dict[str, Any]) -> None:
        self.unsaved.append(outcome)

    @property
    def just_filled(self) -> bool:
        """The batch has just reached its size (true once per batch: wake the writer once)."""
        return len(self.unsaved) == self.rows

    def due(self, now: float) -> bool:
        """A batch is to be written: it is full, or has waited its time."""
        return len(self.unsaved) >= self.rows or (bool(self.unsaved) and self.timer.due(now))

    def take(self) -> list[dict[str, Any]]:
        """The batch to write; the next one starts empty, its time from now."""
        batch, self.unsaved = self.unsaved, []
        self.timer.reset()
        return batch
