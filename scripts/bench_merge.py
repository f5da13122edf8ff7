"""Benchmark the merge: our workbook writer against a bare openpyxl loop and polars.

    .venv/bin/python scripts/bench_merge.py --rows 200000 [--rounds 3] [--only ours,bare]

Makes realistic result shards (the real layout: `schema.result_schema` with the derived columns
of `cardgenius.derived_fields` for six input columns, four API fields and top 3, so the Results
sheet has 40 columns; ~90% ok, the rest no_cards, failed and invalid) in 1,000-row shards in a
temporary folder, one shard at a time. Then it times each contender on the same shards, each in
its own subprocess so that peak RSS is that contender's, alternating contenders round by round
(A B C, A B C, ...) so a busy machine slows all alike, and prints the median of the rounds:

- `ours`: `merge.write_workbook`, what `pipeline merge` runs;
- `ours-no-insights`: the same without the Insights sheet (what the Insights cost);
- `bare`: an openpyxl write-only workbook fed `ws.append(list_of_values)`, shard by shard (a
  new sheet every 1,048,575 rows, as Excel needs);
- `polars`: `pl.read_parquet` of all shards, then `DataFrame.write_excel` (needs xlsxwriter,
  which is not a project dependency: `pip install xlsxwriter` into .venv for this);
- `parquet`, `csv`: our exports (`merge.export_parquet`, `merge.export_csv`).

Times are wall seconds inside the subprocess, from the first shard read to the file closed.
Peak RSS is the subprocess's own maximum resident size plus that of any process it started.
`bench_merge(rows, rounds=...)` returns the rows of the table as dicts, for scripts/bench.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.api import cardgenius

ID = "user_id"
VALUES = tuple(f"avg_{n}_gmv" for n in ("amazon", "flipkart", "grocery", "myntra", "ajio"))
VALUES += ("avg_confirmed_gmv",)
MAPPED = ("amazon_spends", "flipkart_spends", "grocery_spends_online", "other_online_spends")
DERIVED = cardgenius.derived_fields(MAPPED, 3)
SHARD_ROWS = 1000
EXCEL_ROWS = 1_048_575
CARD_NAMES = [
    "HDFC Millennia Credit Card",
    "SBI Cashback Card",
    "Axis Bank ACE Credit Card",
    "Amazon Pay ICICI Credit Card",
    "Flipkart Axis Bank Credit Card",
    "HSBC Live+ Credit Card",
    "Swiggy HDFC Bank Credit Card",
    "IDFC FIRST Select Credit Card",
]
CONTENDERS = ("ours", "ours-no-insights", "bare", "polars", "parquet", "csv")
REQUEST = {
    "amazon_spends": [VALUES[0]],
    "flipkart_spends": [VALUES[1]],
    "grocery_spends_online": [VALUES[2]],
    "other_online_spends": list(VALUES[3:]),
}


# --- data ----------------------------------------------------------------------------------


def make_shards(folder: Path, rows: int, *, seed: int = 7) -> list[Path]:
    """Write `rows` result rows as 1,000-row shards `shard-NNNNN.parquet` in `folder`; one
    shard is in memory at a time."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, start in enumerate(range(0, rows, SHARD_ROWS)):
        path = folder / f"shard-{index:05d}.parquet"
        pq.write_table(_shard(start, min(SHARD_ROWS, rows - start), seed + index), path)
        paths.append(path)
    return paths


def _shard(start: int, n: int, seed: int) -> pa.Table:
    draws = iter(range(seed * 1000, seed * 1000 + 1000))

    def uniform() -> pa.Array:
        return pc.random(n, initializer=next(draws))

    def money(scale: float, zeros: float = 0.0) -> pa.Array:
        value = pc.round(pc.multiply(uniform(), scale), 2)
        return pc.if_else(pc.less(uniform(), zeros), 0.0, value) if zeros else value

    roll = uniform()
    status = pc.if_else(
        pc.less(roll, 0.90),
        "ok",
        pc.if_else(
            pc.less(roll, 0.95), "no_cards", pc.if_else(pc.less(roll, 0.98), "failed", "invalid")
        ),
    )
    ok = pc.equal(status, "ok")
    answered = pc.or_(ok, pc.equal(status, "no_cards"))
    null_f, null_i = pa.scalar(None, pa.float64()), pa.scalar(None, pa.int32())
    columns: dict[str, pa.Array] = {
        schema.ROW: pa.array(range(start, start + n), pa.int64()),
        ID: pa.array([f"CG{i:07d}" for i in range(start, start + n)]),
        **{name: money(20_000, zeros=0.4) for name in VALUES},
        schema.STATUS: status,
        schema.HTTP_STATUS: pc.if_else(
            answered, pa.scalar(200, pa.int32()), pa.scalar(503, pa.int32())
        ),
        schema.ATTEMPTS: pc.if_else(answered, pa.scalar(1, pa.int32()), pa.scalar(4, pa.int32())),
        schema.LATENCY_MS: money(400),
        schema.ERROR: pc.if_else(
            answered, pa.scalar(None, pa.string()), "HTTP 503: Service Unavailable"
        ),
        schema.ERROR_KIND: pc.if_else(answered, pa.scalar(None, pa.string()), "http_5xx"),
        schema.ANSWERED_AT: pc.if_else(
            answered, "2026-11-30T12:00:00Z", pa.scalar(None, pa.string())
        ),
        schema.REUSED: pc.less(uniform(), 0.8),  # next month's run: most answers reused
    }
    for name, dtype in DERIVED:
        if name == "cards_returned":
            value: pa.Array = pc.if_else(
                ok, pa.scalar(15, pa.int32()), pc.if_else(answered, 0, null_i)
            )
        elif name.endswith("card_id"):
            value = pc.if_else(ok, pc.cast(pc.floor(pc.multiply(uniform(), 300)), pa.int64()), None)
        elif name.endswith("card_name"):
            picks = pc.cast(pc.floor(pc.multiply(uniform(), len(CARD_NAMES))), pa.int32())
            value = pc.if_else(
                ok, pc.take(pa.array(CARD_NAMES), picks), pa.scalar(None, pa.string())
            )
        else:
            value = pc.if_else(ok, money(60_000), null_f)
        columns[name] = pc.cast(value, dtype)
    return pa.table(columns, schema=schema.result_schema(ID, VALUES, DERIVED))


# --- contenders, each run in its own subprocess --------------------------------------------


def results_columns() -> list[str]:
    """The Results sheet's columns, which the bare loop and polars write for every row."""
    return [ID, schema.STATUS, *VALUES, *(name for name, _ in DERIVED)]


def run_ours(paths: Sequence[Path], dest: Path, insights: bool = True) -> None:
    from pipeline.merge import write_workbook

    write_workbook(
        dest,
        paths,
        id_column=ID,
        value_columns=VALUES,
        facts=[("bench", True)],
        request=REQUEST,
        insights=insights,
    )


def run_ours_without_insights(paths: Sequence[Path], dest: Path) -> None:
    run_ours(paths, dest, insights=False)


def run_bare(paths: Sequence[Path], dest: Path) -> None:
    """The yardstick: the Results columns of every row, read shard by shard in batches as
    ours does, each row a `ws.append(list)`; a new sheet every 1,048,575 rows."""
    from openpyxl import Workbook

    columns = results_columns()
    wb = Workbook(write_only=True)
    ws, rows, sheets = None, EXCEL_ROWS, 0
    for path in paths:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=2048, columns=columns):
            for values in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                if rows == EXCEL_ROWS:
                    sheets += 1
                    ws, rows = wb.create_sheet(f"Results {sheets}"), 0
                    ws.append(columns)
                ws.append(list(values))
                rows += 1
    wb.save(dest)


def run_polars(paths: Sequence[Path], dest: Path) -> None:
    """`DataFrame.write_excel` of all rows read at once (Results columns), money formatted,
    header frozen; one worksheet per 1,048,575 rows in one xlsxwriter workbook."""
    import polars as pl
    import xlsxwriter

    frame = pl.read_parquet([str(p) for p in paths], columns=results_columns())
    with xlsxwriter.Workbook(dest) as book:
        for n, start in enumerate(range(0, frame.height, EXCEL_ROWS), 1):
            frame.slice(start, EXCEL_ROWS).write_excel(
                book,
                worksheet=f"Results {n}",
                dtype_formats={pl.Float64: "#,##0.00"},
                freeze_panes="A2",
            )


def run_parquet(paths: Sequence[Path], dest: Path) -> None:
    from pipeline.merge import export_parquet

    export_parquet(dest, paths, id_column=ID, value_columns=VALUES)


def run_csv(paths: Sequence[Path], dest: Path) -> None:
    from pipeline.merge import export_csv

    export_csv(dest, paths, id_column=ID, value_columns=VALUES)


RUNNERS: dict[str, tuple[Callable[[Sequence[Path], Path], None], str]] = {
    "ours": (run_ours, ".xlsx"),
    "ours-no-insights": (run_ours_without_insights, ".xlsx"),
    "bare": (run_bare, ".xlsx"),
    "polars": (run_polars, ".xlsx"),
    "parquet": (run_parquet, ".parquet"),
    "csv": (run_csv, ".csv"),
}


def _child(name: str, folder: Path) -> dict[str, Any]:
    """Run one contender here (a subprocess) and say how it went."""
    import resource

    paths = sorted(folder.glob("shard-*.parquet"))
    run, suffix = RUNNERS[name]
    dest = folder.parent / f"out-{name}{suffix}"
    started = time.perf_counter()
    run(paths, dest)
    seconds = time.perf_counter() - started
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    size = dest.stat().st_size
    dest.unlink()
    return {"seconds": seconds, "peak_rss_mb": (own + children) / 1024, "file_mb": size / 1e6}


def _measure(name: str, folder: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", name, "--shards", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --- the benchmark -------------------------------------------------------------------------


def bench_merge(
    rows: int,
    *,
    rounds: int = 1,
    contenders: Sequence[str] = CONTENDERS,
    workdir: Path | None = None,
    log: Callable[[str], object] = lambda line: print(line, file=sys.stderr, flush=True),
) -> list[dict[str, Any]]:
    """Time `contenders` on `rows` result rows, `rounds` times each, alternating; one dict per
    contender: rows, rows_per_s (of the median round), seconds (all rounds), peak_rss_mb (the
    largest), file_mb, vs_bare and vs_polars (rows/s ratios; None when either is missing), or
    error (why it did not run)."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="bench-merge-") as tmp:
        folder = Path(tmp) / "shards"
        started = time.perf_counter()
        make_shards(folder, rows)
        seconds = time.perf_counter() - started
        log(f"made {rows:,} rows in {len(list(folder.iterdir())):,} shards in {seconds:.1f}s")
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
        for round_ in range(1, rounds + 1):
            for name in contenders:
                result = _measure(name, folder)
                runs[name].append(result)
                log(f"round {round_} {name}: {result}")
    table = [_summarise(name, rows, results) for name, results in runs.items()]
    speed = {row["contender"]: row.get("rows_per_s") for row in table}
    for row in table:
        for other in ("bare", "polars"):
            base, mine = speed.get(other), row.get("rows_per_s")
            row[f"vs_{other}"] = round(mine / base, 2) if mine and base else None
    return table


def _summarise(name: str, rows: int, results: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in results if "error" not in r]
    if not good:
        return {"contender": name, "rows": rows, "error": results[0]["error"]}
    seconds = [r["seconds"] for r in good]
    return {
        "contender": name,
        "rows": rows,
        "rows_per_s": round(rows / statistics.median(seconds)),
        "seconds": [round(s, 2) for s in seconds],
        "peak_rss_mb": round(max(r["peak_rss_mb"] for r in good)),
        "file_mb": round(good[0]["file_mb"], 1),
    }


def format_table(table: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{'contender':<10} {'rows':>10} {'rows/s':>9} {'peak RSS MB':>12} {'file MB':>8} "
        f"{'x bare':>7} {'x polars':>8}  seconds"
    ]
    for row in table:
        if "error" in row:
            lines.append(f"{row['contender']:<10} {row['rows']:>10,} not run: {row['error']}")
            continue
        ratios = [
            f"{r:.2f}" if (r := row.get(k)) is not None else "-" for k in ("vs_bare", "vs_polars")
        ]
        lines.append(
            f"{row['contender']:<10} {row['rows']:>10,} {row['rows_per_s']:>9,} "
            f"{row['peak_rss_mb']:>12,} {row['file_mb']:>8} {ratios[0]:>7} {ratios[1]:>8}  "
            f"{row['seconds']}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", help=f"comma-separated, of {','.join(CONTENDERS)}")
    parser.add_argument("--workdir", type=Path, help="where the temporary shards go")
    parser.add_argument("--json", action="store_true", help="print the table as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--shards", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.shards)))
        return 0
    contenders = args.only.split(",") if args.only else CONTENDERS
    unknown = set(contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"--only: unknown {', '.join(sorted(unknown))}")
    table = bench_merge(args.rows, rounds=args.rounds, contenders=contenders, workdir=args.workdir)
    print(json.dumps(table, indent=2) if args.json else format_table(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
