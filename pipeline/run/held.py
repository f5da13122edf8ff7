"""One shard's rows held while the API may be refusing the run, and the run's refusal.

A permanent error is normally the row's own fault. Until the process's judge
(traffic/refusal.py) has seen an answer, such rows are held (they stay pending) instead of
failed: the judge's verdicts say when they fail with their own errors (an answer came, or
the errors differ) and when the run is refused. A refusal, by the judge or of the key, is
told to the coordinator once and stops the shard's sending. `rerun-failed` requests rows that
failed before: a permanent error fails its row again at once, as it did then.

Plain state, no clock, no I/O: the shard's lock guards it.
"""

from __future__ import annotations

from pipeline.errors import CallError
from pipeline.run.attempt import Attempt
from pipeline.traffic.refusal import FAIL, HOLD, REFUSE, RELEASE, RefusalJudge

Held = tuple[Attempt, CallError]
"""A row's last attempt and the permanent error it got."""


class HeldRows:
    def __init__(self, judge: RefusalJudge, *, retry_failed: bool = False) -> None:
        self.judge = judge
        self.retry_failed = retry_failed
        self.rows: list[Held] = []
        self.refused = ""
        """Why the run is refused, once it is ("" = it is not)."""

    def answered(self) -> list[Held]:
        """An answer came: the held rows that fail now, with their own errors."""
        return self._release() if self.judge.answered() else []

    def permanent(self, attempt: Attempt, error: CallError) -> tuple[list[Held], str]:
        """A permanent error for a row: (the rows that fail now, the run's refusal or "").
        None fail while the row is held; it fails with those the verdict releases."""
        verdict = FAIL if self.retry_failed else self.judge.permanent(error.message)
        if verdict in (HOLD, REFUSE):
            self.rows.append((attempt, error))
            refusal = self.judge.refusal if verdict == REFUSE else None
            return [], f"the API refused the run: {refusal}" if refusal else ""
        released = self._release() if verdict == RELEASE else []
        return [*released, (attempt, error)], ""

    def refuse(self, reason: str) -> bool:
        """The run is refused for `reason`: True the first time (tell it, stop sending)."""
        if self.refused:
            return False
        self.refused = reason
        return True

    def at_end(self, stopping: bool) -> tuple[list[Held], str]:
        """The shard has nothing left to send: (the held rows that fail, the refusal or "").
        The judge refuses the run, or they fail; when the run is `stopping` (Ctrl+C), they
        stay pending for the next run to judge."""
        if not self.rows or self.refused or stopping:
            return [], ""
        refusal = self.judge.shard_ended()
        if refusal:
            return [], f"the API refused the run: {refusal}"
        return self._release(), ""

    def _release(self) -> list[Held]:
        rows, self.rows = self.rows, []
        return rows
