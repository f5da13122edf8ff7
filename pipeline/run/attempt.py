"""One call for one row, as a lane makes it, outside the shard's lock.

The lane asks the shared limiter for a permit, makes the call on its thread's client, tells
the limiter how it went (the breaker counts the failures that say the API is unwell), and
builds an answered row's outcome, derived columns included, here rather than under the lock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.api.classify import Outcome, outcome_of
from pipeline.errors import CallError, ErrorKind
from pipeline.run.outcomes import answered_outcome
from pipeline.run.process import WorkerProcess

Row = dict[str, Any]
SENT = "_sent"
"""The field of the bytes a valid row's request sends, made when its shard is read (with its
body's key): a request does not make them again."""


@dataclass
class Attempt:
    """One call for one row, as a lane made it."""

    row: Row
    attempts: int
    """Attempts made for the row, this one included."""
    outcome: Row | None = None
    """The answered row's outcome, derived columns included."""
    error: CallError | None = None
    answered_at: float = 0.0
    """When the answer came (Unix seconds)."""
    stopped: bool = False
    """The run stopped before the call was made."""
    fresh: bool = True
    """The row had not failed yet in this run when the call was made (breaker.py)."""


def make_attempt(
    process: WorkerProcess, row: Row, attempts: int, columns: Sequence[str], *, fresh: bool = True
) -> Attempt:
    """Wait for the limiter and make one call for `row` (`attempts` made before this one);
    `columns`: the input row's columns its outcome keeps; `fresh`: the row has not failed yet
    in this run (only such rows' failures can show the breaker an outage)."""
    attempt = Attempt(row, attempts + 1, fresh=fresh)
    limiter = process.limiter
    permit = None if process.stop.is_set() else limiter.acquire(fresh)
    if permit is None:
        attempt.stopped = True
        return attempt
    went, answer = None, None
    try:
        answer = process.client().call(row.get(SENT) or process.body(row))
        went = Outcome.SUCCESS
    except CallError as exc:
        attempt.error = exc
        # An unusable 2xx body is the API answering badly (NaN in a card, a field missing):
        # not a sign that it is down. Counted, a run of them opened the breaker and held
        # every row for give_up_after.
        went = None if exc.kind is ErrorKind.BAD_BODY else outcome_of(exc)
    finally:
        limiter.release(permit, went, answer.quota if answer is not None else None)
    if answer is not None:
        settings, attempt.answered_at = process.settings, time.time()
        attempt.outcome = answered_outcome(
            row,
            columns,
            attempt.attempts,
            answer,
            process.mapped,
            settings.top_n,
            attempt.answered_at,
        )
    # Why the parsed answer must not outlive this call (gc cost): BENCHMARKS.md.
    return attempt
