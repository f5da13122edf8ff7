"""Tests of the Insights sheet: its tables against polars over the same shards, its charts."""

from __future__ import annotations

import io
import random
import shutil
import subprocess
import zipfile
from itertools import pairwise
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook
from openpyxl.worksheet.worksheet import Worksheet
from rich.console import Console

from pipeline import schema
from pipeline.api.cardgenius import derived_fields
from pipeline.errors import RunStateError
from pipeline.merge import write_workbook
from pipeline.merge.insights import (
    SAVINGS_EDGES,
    SPEND_EDGES,
    TOP_CARDS,
    band_labels,
    compute_insights,
    top_cards,
)
from pipeline.run.coordinator import _print_top_cards
from pipeline.state.store import RunLayout

ID = "user_id"
VALUES = ("amazon", "flipkart", "hotels", "lounge")
REQUEST = {
    "amazon_spends": ["amazon"],
    "other_online_spends": ["flipkart"],
    "hotels_annual": ["hotels"],
    "domestic_lounge_usage_quarterly": ["lounge"],
}
MAPPED = tuple(REQUEST)
CARDS = [f"Card {chr(65 + i)}" for i in range(20)]  # more than TOP_CARDS


def make_rows(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        status = rng.choices(schema.STATES, weights=(85, 5, 5, 5))[0]
        row: dict[str, Any] = {schema.ROW: i, ID: f"U{i}", schema.STATUS: status}
        row |= {c: rng.choice([None, 0.0, rng.uniform(0, 120_000)]) for c in VALUES}
        if status == schema.OK:
            # A skewed catalogue: a few cards win most users, as in real answers.
            row["top1_card_name"] = CARDS[min(int(rng.expovariate(0.25)), len(CARDS) - 1)]
            row["top1_net_savings"] = rng.uniform(-3_000, 130_000)
            row["top1_joining_fees"] = rng.choice([0.0, 0.0, 499.0, 2_500.0, None])
        rows.append(row)
    return rows


def make_shards(folder: Path, sizes: list[int]) -> list[Path]:
    shard_schema = schema.result_schema(ID, VALUES, derived_fields(MAPPED, 2))
    paths, seed = [], 0
    for index, size in enumerate(sizes):
        rows = make_rows(size, seed := seed + 1)
        columns = {f.name: [r.get(f.name) for r in rows] for f in shard_schema}
        path = folder / f"shard-{index:05d}.parquet"
        pq.write_table(pa.table(columns, schema=shard_schema), path)
        paths.append(path)
    return paths


def write(tmp_path: Path, paths: list[Path], **kw: Any) -> Path:
    dest = tmp_path / "out.xlsx"
    write_workbook(dest, paths, id_column=ID, value_columns=VALUES, request=REQUEST, **kw)
    return dest


def blocks(ws: Worksheet) -> dict[str, tuple[tuple[Any, ...], list[tuple[Any, ...]], int]]:
    """The Insights' tables by title: (header, rows, row of the header)."""
    lines = list(ws.iter_rows(min_row=1, max_col=4, values_only=True))
    found = {}
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and line[0] and line[1] is None and lines[i + 1][1] is not None:
            end = i + 2
            while end < len(lines) and lines[end][0] is not None:
                end += 1
            header = tuple(v for v in lines[i + 1] if v is not None)
            rows = [line[: len(header)] for line in lines[i + 2 : end]]
            found[line[0]] = (header, rows, i + 2)
    return found


def expected_tables(paths: list[Path]) -> dict[str, list[tuple[Any, ...]]]:
    """The tables, computed here the plain way: the whole frame in memory, one query each."""
    frame = pl.read_parquet(paths)
    best = frame.filter((pl.col("status") == "ok") & pl.col("top1_card_name").is_not_null())
    n = best.height
    cards = (
        best.group_by("top1_card_name")
        .agg(pl.len().alias("users"), pl.col("top1_net_savings").mean().alias("avg"))
        .sort(["users", "top1_card_name"], descending=[True, False])
    )
    top = [(c, u, u / n, a) for c, u, a in cards.head(TOP_CARDS).iter_rows()]
    rest = best.filter(~pl.col("top1_card_name").is_in(cards.head(TOP_CARDS)["top1_card_name"]))
    other = (f"every other card ({cards.height - TOP_CARDS})", rest.height, rest.height / n)
    top.append((*other, rest["top1_net_savings"].mean()))

    def band(values: pl.Series, edges: tuple[int, ...]) -> list[int]:
        bounds = [-float("inf"), *edges, float("inf")]
        return [int(((values >= lo) & (values < hi)).sum()) for lo, hi in pairwise(bounds)]

    counts = band(best["top1_net_savings"], SAVINGS_EDGES)
    savings = list(zip(band_labels(SAVINGS_EDGES), counts, strict=True))
    monthly = best.select(
        pl.col("amazon").fill_null(0)
        + pl.col("flipkart").fill_null(0)
        + pl.col("hotels").fill_null(0) / 12
    ).to_series()
    spend = []
    bounds = [-float("inf"), *SPEND_EDGES, float("inf")]
    for label, (lo, hi) in zip(band_labels(SPEND_EDGES), pairwise(bounds), strict=True):
        inside = best.filter((monthly >= lo) & (monthly < hi))
        spend.append((label, inside.height, inside["top1_net_savings"].mean()))
    fees = best["top1_joining_fees"]
    fee_counts = [int((fees == 0).sum()), int((fees > 0).sum()), fees.null_count()]
    names = ("no joining fee", "a joining fee", "joining fee not given")
    outcomes = frame["status"].value_counts()
    by_state = dict(outcomes.iter_rows())
    return {
        "cards": top,
        "savings": savings,
        "spend": spend,
        "fees": [(name, c, c / n) for name, c in zip(names, fee_counts, strict=True)],
        "outcomes": [
            (s, by_state.get(s, 0), by_state.get(s, 0) / frame.height) for s in schema.STATES
        ],
    }


def approx_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(pytest.approx(v) if isinstance(v, float) else v for v in r) for r in rows]


def test_insights_tables_equal_polars_over_the_shards(tmp_path: Path) -> None:
    paths = make_shards(tmp_path, [700, 1, 0, 1_300])
    ws = load_workbook(write(tmp_path, paths))["Insights"]
    tables = {title: rows for title, (_, rows, _) in blocks(ws).items()}
    want = expected_tables(paths)
    assert tables["Best cards by users (top 15)"] == approx_rows(want["cards"])
    assert tables["Users by best-card net savings (₹ a year)"] == want["savings"]
    spend = tables["Average best-card net savings by total monthly spend"]
    assert spend == approx_rows(want["spend"])
    assert tables["Joining fee of the best card"] == approx_rows(want["fees"])
    assert tables["Users by outcome"] == approx_rows(want["outcomes"])
    assert sum(r[1] for r in want["savings"]) == sum(r[1] for r in want["cards"])


def test_every_chart_draws_from_its_table(tmp_path: Path) -> None:
    paths = make_shards(tmp_path, [400])
    dest = write(tmp_path, paths)
    ws = load_workbook(dest)["Insights"]
    found = blocks(ws)
    charts = ws._charts
    assert len(charts) == len(found) == 5
    kinds = [type(chart).__name__ for chart in charts]
    assert kinds == ["BarChart", "BarChart", "BarChart", "PieChart", "BarChart"]
    for chart, (title, (header, rows, header_row)) in zip(charts, found.items(), strict=True):
        (series,) = chart.series
        first, last = header_row + 1, header_row + len(rows)
        column = (
            "C" if header[2:3] == ("average net savings (₹ a year)",) and len(header) == 3 else "B"
        )
        refs = [series.val.numRef.f, series.cat.strRef.f, series.tx.strRef.f]
        assert [ref.replace("$", "") for ref in refs] == [
            f"'Insights'!{column}{first}:{column}{last}",
            f"'Insights'!A{first}:A{last}",
            f"'Insights'!{column}{header_row}",
        ], title
    with zipfile.ZipFile(dest) as book:
        names = set(book.namelist())
        types = book.read("[Content_Types].xml").decode()
    assert {f"xl/charts/chart{n}.xml" for n in range(1, 6)} <= names
    assert "xl/drawings/drawing1.xml" in names
    assert "xl/worksheets/_rels/sheet2.xml.rels" in names  # Insights is the second sheet
    assert types.count("drawingml.chart+xml") == 5


def test_insights_can_be_left_out(tmp_path: Path) -> None:
    paths = make_shards(tmp_path, [50])
    book = load_workbook(write(tmp_path, paths, insights=False))
    assert book.sheetnames == ["Summary", "Results", "Failures"]


def test_no_shards_give_empty_tables(tmp_path: Path) -> None:
    insights = compute_insights([], REQUEST)
    assert insights.best_cards.rows == () and insights.users == insights.with_card == 0
    assert [r[1] for r in insights.outcomes.rows] == [0, 0, 0, 0]
    book = load_workbook(write(tmp_path, []))
    assert len(book["Insights"]._charts) == 5


def test_top_cards_most_users_first(tmp_path: Path) -> None:
    paths = make_shards(tmp_path, [300, 200])
    want = expected_tables(paths)["cards"][:5]
    assert top_cards(paths, 5) == [(name, users) for name, users, _, _ in want]
    assert top_cards([], 5) == []


@pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed")
def test_libreoffice_opens_the_workbook_without_errors(tmp_path: Path) -> None:
    paths = make_shards(tmp_path, [60])
    dest = write(tmp_path, paths)
    profile = tmp_path / "profile"  # its own profile: no clash with another soffice running
    done = subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation=file://{profile}",
            "--headless",
            "--convert-to",
            "pdf",
            "--outdir",
            str(tmp_path),
            str(dest),
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert "Error" not in done.stdout + done.stderr
    assert (tmp_path / "out.pdf").stat().st_size > 10_000


def test_an_unreadable_shard_is_a_run_state_error_and_not_a_crash_at_the_end_of_a_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = RunLayout(tmp_path / "out")
    layout.results_dir.mkdir(parents=True)
    make_shards(layout.results_dir, [20])
    layout.result_shard("shard-00001.parquet").write_bytes(b"PAR1 not parquet")
    paths = [layout.result_shard(n) for n in layout.result_shards()]
    with pytest.raises(RunStateError, match="cannot read the result shards"):
        top_cards(paths, 5)
    with pytest.raises(RunStateError, match="cannot read the result shards"):
        compute_insights(paths, REQUEST)
    console = Console(file=io.StringIO())
    _print_top_cards(console, layout)  # the run goes on to its merge, which names the shard
    assert "Best cards not listed: cannot read the result shards" in caplog.text
