"""What changed between two runs: users added and removed, top cards and savings that moved,
rows newly failed or recovered (`pipeline compare OLD_OUT NEW_OUT`, `run --compare-with`).

Users are matched by the id column (each run's own, from its run.json); a repeated id counts
by its first row, and rows without an id are left out. The two runs' result shards are read
with polars' streaming engine, a few columns of them, so 2,000,000 users a side fit in well
under 1 GB. The changes go to `changes.parquet` in the new run's folder, one row per user who
changed, with the kind of change; the counts go to run.json, for the Summary sheet, and the
merge adds the rows as the `Changes` sheet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.errors import RunStateError
from pipeline.state import runinfo
from pipeline.state.store import RunLayout, read_run, write_parquet_atomic

CHANGES_FILE = "changes.parquet"
PART_ROWS = 500_000
"""Users a side joined at once: about 250 MB of polars at the peak."""
DEFAULT_MIN_CHANGE = 100.0
"""Rupees a year: less is noise to the analyst, not a change worth a row."""

ADDED, REMOVED = "added", "removed"
NEWLY_FAILED, RECOVERED = "newly failed", "recovered"
TOP_CARD, SAVINGS = "top card changed", "savings moved"
KINDS = (ADDED, REMOVED, TOP_CARD, SAVINGS, NEWLY_FAILED, RECOVERED)

_GOOD = (schema.OK, schema.NO_CARDS)
_TAKEN = {
    schema.STATUS: "status",
    "top1_card_id": "top_card_id",
    "top1_card_name": "top_card",
    "top1_net_savings": "net_savings",
    schema.ERROR: "error",
}


@dataclass(frozen=True)
class Comparison:
    against: str
    """The old run's folder."""
    min_change: float
    counts: dict[str, int]


def compare_runs(
    old_root: Path, new_root: Path, min_change: float, part_rows: int = PART_ROWS
) -> Comparison:
    """Write `changes.parquet` in `new_root` and return the counts by kind of change.

    Users are split by a hash of their id into parts of about `part_rows` rows a side, and
    each part is joined on its own: memory follows the part, not the table. Only the rows
    that changed are kept, sorted by kind of change, then id."""
    (old, old_rows), (new, new_rows) = _side(old_root, "old"), _side(new_root, "new")
    parts = max(1, -(-max(old_rows, new_rows) // part_rows))
    found = []
    for part in range(parts):
        mine = pl.col("id").hash(seed=7) % parts == part
        sides = [frame.filter(mine) if parts > 1 else frame for frame in (old, new)]
        joined = _users(sides[0]).join(_users(sides[1]), on="id", how="full", coalesce=True)
        found.append(_changes(joined, min_change).collect(engine="streaming"))
    changes = pl.concat(found).sort("change", "id")
    write_parquet_atomic(changes.to_arrow(), new_root / CHANGES_FILE)
    by_kind = dict(changes.group_by("change").len().iter_rows())
    counts = {k: int(by_kind.get(k, 0)) for k in KINDS}
    result = Comparison(str(old_root.resolve()), min_change, counts)
    runinfo.record_changes(RunLayout(new_root), asdict(result))
    return result


def _changes(joined: pl.LazyFrame, min_change: float) -> pl.LazyFrame:
    """The joined users who changed, with the kind of change."""
    in_old, in_new = pl.col("old_status").is_not_null(), pl.col("new_status").is_not_null()
    good_old, good_new = pl.col("old_status").is_in(_GOOD), pl.col("new_status").is_in(_GOOD)
    moved = pl.col("new_net_savings") - pl.col("old_net_savings")  # null unless both have one
    kind = (
        pl.when(~in_old)
        .then(pl.lit(ADDED))
        .when(~in_new)
        .then(pl.lit(REMOVED))
        .when(good_old & ~good_new)
        .then(pl.lit(NEWLY_FAILED))
        .when(~good_old & good_new)
        .then(pl.lit(RECOVERED))
        .when(good_old & pl.col("old_top_card_id").ne_missing(pl.col("new_top_card_id")))
        .then(pl.lit(TOP_CARD))
        .when(good_old & (moved.abs() > min_change))
        .then(pl.lit(SAVINGS))
    )
    return (
        joined.with_columns(kind.alias("change"), moved.alias("net_savings_change"))
        .filter(pl.col("change").is_not_null())
        .select("id", "change", *_columns("old"), *_columns("new"), "net_savings_change")
    )


def _columns(side: str) -> list[str]:
    return [f"{side}_{name}" for name in _TAKEN.values()]


def _side(root: Path, side: str) -> tuple[pl.LazyFrame, int]:
    """One run's result rows, a few columns, lazily, and how many there are."""
    layout = RunLayout(root)
    info = read_run(layout)
    if info is None:
        raise RunStateError(f"{root}: no run here to compare (no run.json)")
    paths = layout.result_shard_paths()
    if not paths:
        raise RunStateError(f"{root}: the run has no results yet; finish it first")
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
    id_column = info.get("fingerprint", {}).get("id_column")
    if not isinstance(id_column, str):
        raise RunStateError(f"{root}: its run.json does not name the id column")
    renamed = {id_column: "id", **{k: f"{side}_{v}" for k, v in _TAKEN.items()}}
    frame = pl.scan_parquet(paths).select(schema.ROW, *renamed).rename(renamed)
    return frame.filter(pl.col("id").is_not_null()), rows


def _users(rows: pl.LazyFrame) -> pl.LazyFrame:
    """One row per id: its first (a repeated id's later rows are invalid ones)."""
    return rows.sort(schema.ROW).unique("id", keep="first").drop(schema.ROW)
