"""A row's outcome: its row of the result shard, as a dict.

An outcome carries the input row's own columns (row number, id, the value columns), its final
state and the call that settled it (`http_status`, `attempts`, `latency_ms`, `error_kind`,
`error`), when its answer came and whether it was reused from the answer store; an answered
row adds its derived columns, and a twin copies its sender's (dedupe.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from pipeline import schema
from pipeline.api import cardgenius
from pipeline.api.client import Answer

Row = dict[str, Any]


def new_outcome(
    row: Row,
    columns: Sequence[str],
    status: str,
    http_status: int | None = None,
    attempts: int = 0,
    latency_ms: float | None = None,
    *,
    error: str | None = None,
) -> Row:
    """The outcome of `row`, keeping its `columns`; `attempts` 0: no request was made."""
    outcome = {name: row[name] for name in columns}
    outcome[schema.STATUS] = status
    outcome[schema.HTTP_STATUS] = http_status
    outcome[schema.ATTEMPTS] = attempts
    outcome[schema.LATENCY_MS] = latency_ms
    outcome[schema.ERROR_KIND] = None
    outcome[schema.ERROR] = error
    outcome[schema.ANSWERED_AT] = None
    outcome[schema.REUSED] = False
    return outcome


def copied_outcome(row: Row, columns: Sequence[str], answer: Row) -> Row:
    """The outcome of a twin that copies `answer` (no request of its own: attempts 0)."""
    outcome = new_outcome(row, columns, answer[schema.STATUS], answer[schema.HTTP_STATUS])
    outcome.update(answer)
    outcome[schema.ATTEMPTS] = 0
    outcome[schema.LATENCY_MS] = None
    return outcome


def stamp(at: float) -> str:
    """`answered_at` as the results hold it: UTC, to the second, ISO 8601."""
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def answered_outcome(
    row: Row,
    columns: Sequence[str],
    attempts: int,
    answer: Answer,
    mapped: Sequence[str],
    top_n: int,
    answered_at: float,
) -> Row:
    """The outcome of an answered row: ok (or no_cards), with its derived columns;
    `answered_at`: when the answer came (Unix seconds)."""
    state = schema.OK if answer.cards else schema.NO_CARDS
    outcome = new_outcome(row, columns, state, answer.http_status, attempts, answer.latency_ms)
    outcome[schema.ANSWERED_AT] = stamp(answered_at)
    outcome.update(cardgenius.derive(answer.cards, mapped, top_n, answer.checked))
    return outcome
