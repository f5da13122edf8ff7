"""Column layout of the input shards and result shards.

Input shard (one per `shard_size` input rows, written by inputs/shard.py):
    _row       int64    position of the row among the input's data rows, from 0
    <id>       string   the id column, as text (null when missing)
    <columns>  float64  each input column the `[request]` mapping reads, parsed (null if invalid)
    _invalid   string   why the row cannot be sent; null for a valid row

Result shard (one per finished input shard, written by run/shardfiles.py), in input order:
    _row, <id>, <columns>        copied from the input shard
    status     string   ok | no_cards | invalid | failed
    http_status int32   last HTTP status seen; null when none (invalid, connection error)
    attempts   int32    requests sent for the row (0 for invalid)
    latency_ms float64  latency of the last attempt; null when none
    error_kind string   what kind of error failed the row (http_429, http_5xx, http_4xx, timeout,
                        connection, bad_body, other); null when it did not fail, and in
                        result shards written before the column existed
    error      string   what went wrong; null for ok and no_cards
    answered_at string  when the answer was fetched (UTC, ISO 8601); null without one
    reused     bool     the answer came from the answer store, fetched by an earlier run
    <derived>           cards_returned, best_card_savings_gap, top{k}_* (api/cardgenius.py)
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

ROW = "_row"
INVALID = "_invalid"

STATUS = "status"
HTTP_STATUS = "http_status"
ATTEMPTS = "attempts"
LATENCY_MS = "latency_ms"
ERROR_KIND = "error_kind"
ERROR = "error"
ANSWERED_AT = "answered_at"
REUSED = "reused"

OK = "ok"
NO_CARDS = "no_cards"
INVALID_STATE = "invalid"
FAILED = "failed"
STATES = (OK, NO_CARDS, INVALID_STATE, FAILED)

OUTCOME_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    (STATUS, pa.string()),
    (HTTP_STATUS, pa.int32()),
    (ATTEMPTS, pa.int32()),
    (LATENCY_MS, pa.float64()),
    (ERROR_KIND, pa.string()),
    (ERROR, pa.string()),
    (ANSWERED_AT, pa.string()),
    (REUSED, pa.bool_()),
)

# Names a user's id or input column must not take, because result shards use them.
RESERVED = frozenset({ROW, INVALID} | {name for name, _ in OUTCOME_FIELDS})


def input_schema(id_column: str, value_columns: Sequence[str]) -> pa.Schema:
    return pa.schema(
        [(ROW, pa.int64()), (id_column, pa.string())]
        + [(c, pa.float64()) for c in value_columns]
        + [(INVALID, pa.string())]
    )


def result_schema(
    id_column: str,
    value_columns: Sequence[str],
    derived: Sequence[tuple[str, pa.DataType]],
) -> pa.Schema:
    return pa.schema(
        [(ROW, pa.int64()), (id_column, pa.string())]
        + [(c, pa.float64()) for c in value_columns]
        + list(OUTCOME_FIELDS)
        + list(derived)
    )
