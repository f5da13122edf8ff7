"""File-side contenders (sharding, merge), each run as `python -m bench.jobs JOB ...` so its
CPU and peak RSS are its own.

    shard   --input F --out DIR       inputs.shard.shard_input, 1,000-row shards (the default)
    whole-read --input F              the thread-pool script's read: the whole file with pandas
                                      (polars without pandas)
    results --rows N --out DIR        synthetic result shards (scenario 7's fallback data)
    merge-pipeline | merge-openpyxl | merge-pandas | merge-polars --shards DIR --out F

Each prints one JSON line with the rows it handled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.data import ID_COLUMN, MAPPING

VALUE_COLUMNS = tuple(dict.fromkeys(c for cols in MAPPING.values() for c in cols))
SHARD_ROWS = 1000


def shard(args: argparse.Namespace) -> int:
    from pipeline.inputs.shard import shard_input
    from pipeline.state.store import RunLayout

    report = shard_input(
        args.input,
        layout=RunLayout(args.out),
        id_column=ID_COLUMN,
        value_columns=VALUE_COLUMNS,
        shard_size=SHARD_ROWS,
    )
    return report.rows


def whole_read(args: argparse.Namespace) -> int:
    suffix = args.input.suffix.lower()
    try:
        import pandas as pd
    except ImportError:  # CI has no pandas: polars, and openpyxl for xlsx (no fastexcel either)
        import polars as pl

        if suffix == ".xlsx":
            from openpyxl import load_workbook

            sheet = load_workbook(args.input, read_only=True).worksheets[0]
            rows = list(sheet.iter_rows(min_row=2, values_only=True))
            return len(pl.DataFrame(rows, orient="row", infer_schema_length=None, strict=False))
        if suffix == ".csv":  # messy values ("n/a", "1,250.50"): read as text, as pandas would
            return len(pl.read_csv(args.input, infer_schema=False))
        return len(pl.read_parquet(args.input))
    if suffix == ".csv":
        return len(pd.read_csv(args.input, dtype={ID_COLUMN: str}))
    if suffix == ".parquet":
        return len(pd.read_parquet(args.input))
    return len(pd.read_excel(args.input, dtype={ID_COLUMN: str}))


def results(args: argparse.Namespace) -> int:
    """Result shards of `rows` ok rows in the pipeline's result schema (top 3, 4 API fields)."""
    from pipeline import schema
    from pipeline.api import cardgenius

    derived = cardgenius.derived_fields(list(MAPPING), 3)
    result_schema = schema.result_schema(ID_COLUMN, VALUE_COLUMNS, derived)
    args.out.mkdir(parents=True, exist_ok=True)
    for index, start in enumerate(range(0, args.rows, SHARD_ROWS)):
        n = min(SHARD_ROWS, args.rows - start)
        seed = iter(range(index * 100, index * 100 + 100))
        columns: dict[str, pa.Array] = {
            schema.ROW: pa.array(range(start, start + n), pa.int64()),
            ID_COLUMN: pa.array([f"CG{i:07d}" for i in range(start, start + n)]),
            schema.STATUS: pa.array(["ok"] * n),
            schema.HTTP_STATUS: pa.array([200] * n, pa.int32()),
            schema.ATTEMPTS: pa.array([1] * n, pa.int32()),
            schema.ERROR: pa.nulls(n, pa.string()),
        }
        for name, dtype in [*((c, pa.float64()) for c in VALUE_COLUMNS), *derived]:
            if name in columns:
                continue
            if pa.types.is_string(dtype):
                columns[name] = pa.array([f"Card {i % 97}" for i in range(start, start + n)])
                continue
            value = pc.round(pc.multiply(pc.random(n, initializer=next(seed)), 50_000), 2)
            columns[name] = pc.cast(pc.floor(value) if pa.types.is_integer(dtype) else value, dtype)
        columns[schema.LATENCY_MS] = pc.random(n, initializer=next(seed))
        table = pa.table({f.name: columns[f.name] for f in result_schema}, schema=result_schema)
        pq.write_table(table, args.out / f"shard-{index:05d}.parquet")
    return args.rows


def _shards(args: argparse.Namespace) -> list[Path]:
    return sorted(args.shards.glob("shard-*.parquet"))


def merge_pipeline(args: argparse.Namespace) -> int:
    from pipeline.merge import write_workbook

    report = write_workbook(
        args.out, _shards(args), id_column=ID_COLUMN, value_columns=VALUE_COLUMNS, facts=[]
    )
    return report.total


def merge_openpyxl(args: argparse.Namespace) -> int:
    """The bare loop: a write-only workbook fed `ws.append`, shard by shard."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("Results")
    rows = 0
    for path in _shards(args):
        table = pq.read_table(path)
        if rows == 0:
            ws.append(table.column_names)
        for row in zip(*(c.to_pylist() for c in table.columns), strict=True):
            ws.append(row)
        rows += table.num_rows
    wb.save(args.out)
    return rows


def merge_pandas(args: argparse.Namespace) -> int:
    import pandas as pd

    frame = pd.concat([pd.read_parquet(p) for p in _shards(args)], ignore_index=True)
    frame.to_excel(args.out, index=False, sheet_name="Results")
    return len(frame)


def merge_polars(args: argparse.Namespace) -> int:
    import polars as pl

    frame = pl.read_parquet(_shards(args))
    frame.write_excel(args.out, worksheet="Results")
    return len(frame)


JOBS = {
    "shard": shard,
    "whole-read": whole_read,
    "results": results,
    "merge-pipeline": merge_pipeline,
    "merge-openpyxl": merge_openpyxl,
    "merge-pandas": merge_pandas,
    "merge-polars": merge_polars,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", choices=sorted(JOBS))
    parser.add_argument("--input", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--shards", type=Path)
    parser.add_argument("--rows", type=int, default=0)
    args = parser.parse_args(argv)
    print(json.dumps({"rows": JOBS[args.job](args)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
