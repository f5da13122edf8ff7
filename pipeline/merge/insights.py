"""What the results say about cards, computed from the result shards with polars.

`compute_insights` reads the result shards once, lazily and only the columns it needs
(`status`, the best card's name, net savings and joining fee, the input values), and groups
them by every key the tables need at once in polars' streaming engine, so memory stays flat
whatever the row count; the five tables are then cut from that small aggregate:

- the best cards by users (the top `TOP_CARDS`, then every other card as one line);
- users by best-card net savings, in bands of `SAVINGS_EDGES` rupees a year;
- average best-card net savings by total monthly spend, in bands of `SPEND_EDGES` rupees;
- users whose best card has no joining fee, one, or none given;
- users by outcome (row state).

A user "with a best card" is an `ok` row whose best card has a name. Total monthly spend is
the request's monthly fields plus its yearly ones over 12 (lounge visits are not money);
without a request mapping, every input value counts as a monthly spend. A band holds the
values from its first figure up to, not including, the next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import polars as pl

from pipeline import schema
from pipeline.api.cardgenius import ANNUAL_FIELDS
from pipeline.errors import RunStateError

TOP_CARDS = 15
OTHER_CARDS = "every other card"
BEST_NAME, BEST_NET, BEST_FEES = "top1_card_name", "top1_net_savings", "top1_joining_fees"
SAVINGS_EDGES = (0, 2_500, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 50_000, 100_000)
SPEND_EDGES = (2_500, 5_000, 10_000, 20_000, 50_000, 100_000)
NO_FEE, FEE, FEE_UNKNOWN = "no joining fee", "a joining fee", "joining fee not given"
UNKNOWN_STATE = "unknown"

Row = tuple[object, ...]


@dataclass(frozen=True)
class Table:
    """One table of the Insights sheet: a title, column names, rows of plain values."""

    title: str
    header: tuple[str, ...]
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Insights:
    """The tables, and the users they are about. Shares are fractions (0.25 = 25%), average
    savings rupees a year; None where no user is in the line."""

    best_cards: Table  # card, users, share of users with a best card, average net savings
    savings: Table  # band, users
    spend: Table  # band, users, average best-card net savings
    fees: Table  # joining fee, users, share
    outcomes: Table  # state, users, share of all users
    users: int
    with_card: int
    average_net: float | None


def band_labels(edges: Sequence[int]) -> list[str]:
    """Names of the bands below, between and above `edges`."""
    labels = [f"below {edges[0]:,}"]
    labels += [f"{low:,} – {high:,}" for low, high in pairwise(edges)]
    return [*labels, f"{edges[-1]:,} and more"]


def compute_insights(shard_paths: Sequence[Path], request: Mapping[str, Sequence[str]]) -> Insights:
    """The Insights of these result shards; `request` is the run's API field -> input columns
    mapping (what "total monthly spend" adds up)."""
    try:
        groups = _aggregate(shard_paths, request)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _unreadable(exc) from exc
    with_card = groups.filter(pl.col("card").is_not_null())
    users = int(groups["users"].sum())
    card_users = int(with_card["users"].sum())
    net = float(with_card["net"].sum())
    return Insights(
        best_cards=_best_cards(with_card, card_users),
        savings=_banded(with_card, "saving_band", SAVINGS_EDGES, "net savings (₹ a year)"),
        spend=_spend(with_card),
        fees=_fees(with_card, card_users),
        outcomes=_outcomes(groups, users),
        users=users,
        with_card=card_users,
        average_net=net / card_users if card_users else None,
    )


def top_cards(shard_paths: Sequence[Path], count: int) -> list[tuple[str, int]]:
    """The `count` cards that are the best card of most users, with their users, most first
    (ties by name). A shard that cannot be read is a RunStateError."""
    if not shard_paths:
        return []
    try:
        frame = pl.scan_parquet(list(shard_paths))
        if BEST_NAME not in frame.collect_schema().names():
            return []
        best = (pl.col(schema.STATUS) == schema.OK) & pl.col(BEST_NAME).is_not_null()
        ranked = (
            frame.filter(best)
            .group_by(BEST_NAME)
            .len("users")
            .sort(["users", BEST_NAME], descending=[True, False])
            .head(count)
            .collect(engine="streaming")
        )
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise _unreadable(exc) from exc
    return [(str(name), int(n)) for name, n in ranked.iter_rows()]


def _unreadable(exc: Exception) -> RunStateError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RunStateError(
        f"cannot read the result shards ({first}); `pipeline status` lists them, `pipeline "
        "merge` names the one to delete before `pipeline run` redoes it"
    )


def _aggregate(shard_paths: Sequence[Path], request: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    """Users and the sum of their best net savings by (status, card, savings band, spend band,
    fee): at most a few thousand lines whatever the rows."""
    keys = ["status", "card", "saving_band", "spend_band", "fee"]
    if not shard_paths:
        return pl.DataFrame(schema={**dict.fromkeys(keys, pl.String), **_SUMS})
    frame = pl.scan_parquet(list(shard_paths))
    have = frame.collect_schema()

    def column(name: str) -> pl.Expr:
        return pl.col(name) if name in have else pl.lit(None, pl.Float64)

    name = pl.col(BEST_NAME) if BEST_NAME in have else pl.lit(None, pl.String)
    status = pl.col(schema.STATUS).fill_null(UNKNOWN_STATE)
    best = (status == schema.OK) & name.is_not_null()
    net, fees = column(BEST_NET), column(BEST_FEES)
    fee = (
        pl.when(fees.is_null()).then(pl.lit(FEE_UNKNOWN)).when(fees == 0).then(pl.lit(NO_FEE))
    ).otherwise(pl.lit(FEE))
    spend = _monthly_spend(request, column)
    return (
        frame.select(
            status.alias("status"),
            pl.when(best).then(name).alias("card"),
            pl.when(best).then(_band(net, SAVINGS_EDGES)).alias("saving_band"),
            pl.when(best).then(_band(spend, SPEND_EDGES)).alias("spend_band"),
            pl.when(best).then(fee).alias("fee"),
            pl.when(best).then(net).alias("net"),
        )
        .group_by(keys)
        .agg(pl.len().cast(pl.Int64).alias("users"), pl.col("net").sum().alias("net"))
        .collect(engine="streaming")
    )


_SUMS = {"users": pl.Int64, "net": pl.Float64}


def _band(value: pl.Expr, edges: Sequence[int]) -> pl.Expr:
    """The band's index: 0 below the first edge, len(edges) at or above the last."""
    return pl.sum_horizontal([(value >= edge).cast(pl.Int8) for edge in edges]).cast(pl.String)


def _monthly_spend(
    request: Mapping[str, Sequence[str]], column: Callable[[str], pl.Expr]
) -> pl.Expr:
    parts: list[pl.Expr] = []
    for api_field, columns in request.items():
        if api_field.endswith("_quarterly"):
            continue  # lounge visits, not money
        scale = 1 / 12 if api_field in ANNUAL_FIELDS else 1.0
        parts += [column(c).fill_null(0) * scale for c in columns]
    return pl.sum_horizontal(parts) if parts else pl.lit(0.0)


def _ranked_cards(with_card: pl.DataFrame) -> pl.DataFrame:
    return (
        with_card.group_by("card")
        .agg(pl.col("users").sum(), pl.col("net").sum())
        .sort(["users", "card"], descending=[True, False])
    )


def _best_cards(with_card: pl.DataFrame, card_users: int) -> Table:
    cards = _ranked_cards(with_card)
    rows: list[Row] = [
        (name, users, users / card_users, net / users)
        for name, users, net in cards.head(TOP_CARDS).iter_rows()
    ]
    rest = cards.slice(TOP_CARDS)
    if rest.height:
        users, net = int(rest["users"].sum()), float(rest["net"].sum())
        rows.append((f"{OTHER_CARDS} ({rest.height:,})", users, users / card_users, net / users))
    header = ("best card", "users", "share", "average net savings (₹ a year)")
    return Table(f"Best cards by users (top {TOP_CARDS})", header, tuple(rows))


def _banded(with_card: pl.DataFrame, key: str, edges: Sequence[int], what: str) -> Table:
    users = dict(with_card.group_by(key).agg(pl.col("users").sum()).iter_rows())
    rows = tuple((label, int(users.get(str(i), 0))) for i, label in enumerate(band_labels(edges)))
    return Table(f"Users by best-card {what}", (what, "users"), rows)


def _spend(with_card: pl.DataFrame) -> Table:
    sums = with_card.group_by("spend_band").agg(pl.col("users").sum(), pl.col("net").sum())
    found = {band: (users, net) for band, users, net in sums.iter_rows()}
    rows: list[Row] = []
    for i, label in enumerate(band_labels(SPEND_EDGES)):
        users, net = found.get(str(i), (0, 0.0))
        rows.append((label, int(users), net / users if users else None))
    header = ("total monthly spend (₹)", "users", "average net savings (₹ a year)")
    return Table("Average best-card net savings by total monthly spend", header, tuple(rows))


def _fees(with_card: pl.DataFrame, card_users: int) -> Table:
    users = dict(with_card.group_by("fee").agg(pl.col("users").sum()).iter_rows())
    rows = tuple(
        (label, int(users.get(label, 0)), users.get(label, 0) / card_users if card_users else None)
        for label in (NO_FEE, FEE, FEE_UNKNOWN)
    )
    return Table("Joining fee of the best card", ("best card has", "users", "share"), rows)


def _outcomes(groups: pl.DataFrame, total: int) -> Table:
    users = dict(groups.group_by("status").agg(pl.col("users").sum()).iter_rows())
    states = [*schema.STATES, *sorted(s for s in users if s not in schema.STATES)]
    rows = tuple(
        (state, int(users.get(state, 0)), users.get(state, 0) / total if total else None)
        for state in states
    )
    return Table("Users by outcome", ("outcome", "users", "share"), rows)
