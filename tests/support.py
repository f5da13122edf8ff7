"""Helpers the end-to-end tests share: users, input files, configs, and the mock's model."""

from __future__ import annotations

import csv
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from bench.data import config_text  # scripts/bench: pytest's pythonpath

from pipeline.mockapi import MockSettings, compute_response

COLUMNS = ["user_id", "amazon", "flipkart", "myntra", "ajio"]
MAPPING = {
    "amazon_spends": ["amazon"],
    "flipkart_spends": ["flipkart"],
    "other_online_spends": ["myntra", "ajio"],
}


def make_users(count: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    users = []
    for i in range(count):
        values = [
            rng.choice([0, 0, rng.randint(1, 500), rng.randint(500, 40000)]) for _ in range(4)
        ]
        users.append(dict(zip(COLUMNS, [f"U{i:05d}", *values], strict=True)))
    users[3].update(amazon=0, flipkart=0, myntra=0, ajio=0)  # answered with no cards
    return users


def write_csv(path: Path, users: list[dict[str, Any]], extra: list[list[str]] = ()) -> Path:  # type: ignore[assignment]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for user in users:
            writer.writerow([user[c] for c in COLUMNS])
        writer.writerows(extra)
    return path


def write_config(
    tmp_path: Path, input_path: Path, *, url: str | None = None, **sections: Mapping[str, Any]
) -> Path:
    tables: dict[str, dict[str, Any]] = {
        "input": {"path": str(input_path), "id_column": "user_id"},
        "request": dict(MAPPING),
        "api": {
            "mock": url is None,
            "url": url or "http://127.0.0.1:1/cg/api/pro",
            "timeout": 10.0,
        },
        "processing": {"max_workers": 4, "processes": 2, "shard_size": 16},
        "retry": {"max_attempts": 3, "backoff_initial": 0.01, "backoff_max": 0.05},
        "mock": {"latency_ms": 2, "jitter_ms": 1},
        "output": {"dir": str(tmp_path / "out")},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    path = tmp_path / "config.toml"
    path.write_text(config_text(tables), encoding="utf-8")
    return path


def body_of(user: Mapping[str, Any]) -> dict[str, float]:
    return {field: sum(float(user[c]) for c in cols) for field, cols in MAPPING.items()}


def expected_top(user: Mapping[str, Any], settings: MockSettings) -> list[tuple[int, float]]:
    """(card id, net savings) of the mock's answer, ranked here independently of the pipeline."""
    cards = compute_response(body_of(user), settings)["savings"]
    scored = []
    for position, card in enumerate(cards):
        if card["total_savings_yearly"] is None:
            continue
        net = (
            card["total_savings_yearly"]
            - float(card["joining_fees"] or 0)
            + (card["total_extra_benefits"] or 0)
        )
        scored.append((-net, position, card["id"]))
    scored.sort()
    return [(cid, -neg) for neg, _, cid in scored]


def results(out: Path) -> pa.Table:
    shards = sorted((out / "shards" / "results").glob("shard-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in shards])


def check_against_model(
    table: pa.Table, users: list[dict[str, Any]], settings: MockSettings
) -> None:
    rows = table.to_pylist()
    assert [r["user_id"] for r in rows] == [u["user_id"] for u in users]
    for row, user in zip(rows, users, strict=True):
        top = expected_top(user, settings)
        if not top:
            assert row["status"] == "no_cards", row
            continue
        assert row["status"] == "ok", row
        assert row["top1_card_id"] == top[0][0]
        assert row["top1_net_savings"] == pytest.approx(top[0][1])
        if len(top) > 1:
            assert row["top2_card_id"] == top[1][0]
            assert row["best_card_savings_gap"] == pytest.approx(top[0][1] - top[1][1])


def unique_bodies(users: list[dict[str, Any]]) -> int:
    """Requests a run sends with dedupe on: one per distinct request body."""
    return len({tuple(sorted(body_of(u).items())) for u in users})


class Clock:
    """A fake clock for the policies that take one: a test moves `now` by hand."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
