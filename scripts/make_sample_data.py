"""Write a realistic, seeded table of users to try the pipeline on.

    python scripts/make_sample_data.py --rows 5000 --out data/sample_users.csv [--seed 42]
        [--format csv|parquet|xlsx] [--clean]

Columns: `user_id` (text such as "CG0000001"; the leading zeros matter) and six monthly spends
in rupees. Each spend column has its own share of zeros (30-60%) and a log-normal tail up to
5 lakh; most values are whole rupees, some carry paise. By default ~0.1% of rows (at least 6,
one of each kind) carry what users really send: an empty cell, "₹1,200", "1,250.50", a repeated
id, "n/a" and a negative value; the last three make a row invalid. `--clean` leaves them out.

Rows are made and written in chunks of 100,000, so 2,000,000 rows take little memory. The same
seed gives the same users in every format. Needs only the standard library, pyarrow (Parquet)
and openpyxl (xlsx).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ID_COLUMN = "user_id"
# column: (share of zeros, median of the non-zero values in rupees, log-normal sigma)
PROFILES: dict[str, tuple[float, float, float]] = {
    "avg_amazon_gmv": (0.35, 1800.0, 1.3),
    "avg_flipkart_gmv": (0.40, 1500.0, 1.3),
    "avg_myntra_gmv": (0.55, 1200.0, 1.1),
    "avg_ajio_gmv": (0.60, 1100.0, 1.1),
    "avg_confirmed_gmv": (0.30, 3000.0, 1.4),
    "avg_grocery_gmv": (0.45, 2500.0, 0.9),
}
COLUMNS = (ID_COLUMN, *PROFILES)
MAX_RUPEES = 500_000.0  # 5 lakh: the top of the tail
PAISE_SHARE = 0.15  # share of non-zero values with a decimal part
CHUNK_ROWS = 100_000
XLSX_MAX_ROWS = 1_048_575  # one sheet, below the header

MESSY_KINDS = ("empty", "rupee", "commas", "duplicate", "not_a_number", "negative")
INVALID_KINDS = frozenset({"duplicate", "not_a_number", "negative"})
MESSY_VALUES = {"empty": None, "rupee": "₹1,200", "commas": "1,250.50", "not_a_number": "n/a"}

Value = int | float | str | None


def messy_count(rows: int) -> int:
    """Rows that carry a messy value: ~0.1%, at least one of each kind, never row 0."""
    return max(0, min(max(len(MESSY_KINDS), rows // 1000), rows - 1))


def expected_invalid(rows: int, messy: bool = True) -> int:
    """How many rows the pipeline must mark invalid in a file made with these settings."""
    if not messy:
        return 0
    return sum(MESSY_KINDS[i % len(MESSY_KINDS)] in INVALID_KINDS for i in range(messy_count(rows)))


def user_id(index: int, width: int) -> str:
    return f"CG{index + 1:0{width}d}"


def _plan_messy(rng: random.Random, rows: int) -> dict[int, tuple[str, str, int]]:
    """Row -> (kind, column, source row of a repeated id), chosen before any value is made."""
    positions = rng.sample(range(1, rows), messy_count(rows)) if rows > 1 else []
    kinds = {pos: MESSY_KINDS[i % len(MESSY_KINDS)] for i, pos in enumerate(positions)}
    repeats = {pos for pos, kind in kinds.items() if kind == "duplicate"}
    plan = {}
    for pos in positions:
        source = rng.randrange(pos)
        while source in repeats:  # a repeated row's own id is not its index; row 0 never is
            source = rng.randrange(pos)
        plan[pos] = (kinds[pos], rng.choice(list(PROFILES)), source)
    return plan


def _spend(rng: random.Random, zeros: float, mu: float, sigma: float) -> int | float:
    if rng.random() < zeros:
        return 0
    rupees = min(math.exp(rng.gauss(mu, sigma)), MAX_RUPEES)
    return round(rupees, 2) if rng.random() < PAISE_SHARE else max(1, round(rupees))


def generate(rows: int, seed: int = 42, messy: bool = True) -> Iterator[list[list[Value]]]:
    """Yield the users in chunks of `CHUNK_ROWS` rows: [user_id, spend, ...] per row."""
    rng = random.Random(seed)
    plan = _plan_messy(rng, rows) if messy else {}
    width = max(7, len(str(rows)))
    profiles = [(zeros, math.log(median), sigma) for zeros, median, sigma in PROFILES.values()]
    for start in range(0, rows, CHUNK_ROWS):
        chunk: list[list[Value]] = []
        for index in range(start, min(start + CHUNK_ROWS, rows)):
            row: list[Value] = [user_id(index, width)]
            row.extend(_spend(rng, zeros, mu, sigma) for zeros, mu, sigma in profiles)
            if index in plan:
                _make_messy(row, *plan[index], width=width, rng=rng)
            chunk.append(row)
        yield chunk


def _make_messy(
    row: list[Value], kind: str, column: str, source: int, *, width: int, rng: random.Random
) -> None:
    if kind == "duplicate":
        row[0] = user_id(source, width)
        return
    at = COLUMNS.index(column)
    row[at] = -rng.randint(1, 5000) if kind == "negative" else MESSY_VALUES[kind]


def _text(value: Value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def write_csv(path: Path, chunks: Iterator[list[list[Value]]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for chunk in chunks:
            writer.writerows([_text(v) for v in row] for row in chunk)


def write_parquet(path: Path, chunks: Iterator[list[list[Value]]], messy: bool) -> None:
    """Spends are float64, as a warehouse export has them; text when messy cells need it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    spend_type = pa.string() if messy else pa.float64()
    schema = pa.schema([(ID_COLUMN, pa.string())] + [(c, spend_type) for c in PROFILES])
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for chunk in chunks:
            columns = [list(col) for col in zip(*chunk, strict=True)]
            if messy:
                columns[1:] = [[None if v is None else _text(v) for v in c] for c in columns[1:]]
            writer.write_table(pa.table(columns, schema=schema))


def write_xlsx(path: Path, chunks: Iterator[list[list[Value]]]) -> None:
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Users")
    sheet.append(COLUMNS)
    for chunk in chunks:
        for row in chunk:
            sheet.append(row)
    workbook.save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, required=True, help="number of users")
    parser.add_argument("--out", type=Path, required=True, help="file to write")
    parser.add_argument("--seed", type=int, default=42, help="same seed, same users")
    parser.add_argument("--format", choices=("csv", "parquet", "xlsx"), help="default: from --out")
    parser.add_argument(
        "--messy", action="store_true", default=True, help="(default) add messy rows"
    )
    parser.add_argument("--clean", dest="messy", action="store_false", help="no messy rows")
    args = parser.parse_args(argv)
    kind = args.format or args.out.suffix.lower().lstrip(".")
    if kind not in ("csv", "parquet", "xlsx"):
        parser.error(f"--out {args.out}: cannot tell the format; use --format csv|parquet|xlsx")
    if args.rows < 0:
        parser.error(f"--rows {args.rows}: must be 0 or more")
    if kind == "xlsx" and args.rows > XLSX_MAX_ROWS:
        parser.error(f"--rows {args.rows}: an xlsx sheet holds at most {XLSX_MAX_ROWS:,} users")
    started = time.monotonic()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    chunks = generate(args.rows, args.seed, args.messy)
    if kind == "csv":
        write_csv(args.out, chunks)
    elif kind == "parquet":
        write_parquet(args.out, chunks, args.messy)
    else:
        write_xlsx(args.out, chunks)
    print(f"{args.rows} rows -> {args.out} in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
