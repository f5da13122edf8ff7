"""The thread-pool script people run today, re-created for comparison only (never used by
the pipeline).

What it does: one process; pandas reads the whole input; a
`ThreadPoolExecutor(max_workers=20)` maps one function over the rows; ONE `requests.Session`
shared by all threads (requests' defaults: a pool of 10 connections, proxies looked up in
the environment on every call); a log line per call; on any non-200 (or an exception) it
sleeps `2 ** attempt` seconds and tries again, 4 attempts in all; the top 3 cards by yearly
savings go into a list of dicts that pandas writes to one Excel sheet at the end.

    python -m bench.threadpool --url URL --input users.csv --out DIR [--workers 20]

Without pandas it falls back to polars to read and openpyxl to write, and says so on stderr.
Prints one JSON line: {"ok": n, "failed": n, "reader": "pandas" | "polars"}.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.data import ID_COLUMN, MAPPING

MAX_ATTEMPTS = 4
log = logging.getLogger("threadpool")


def call_api(session: requests.Session, url: str, row: dict[str, Any]) -> dict[str, Any]:
    body = {f: sum(float(row[c] or 0) for c in cols) for f, cols in MAPPING.items()}
    status: int | str = "no answer"
    for attempt in range(MAX_ATTEMPTS):
        started = time.time()
        try:
            response = session.post(url, json=body, timeout=30)
            status = response.status_code
        except requests.RequestException as exc:
            status = type(exc).__name__
        log.info(
            "user %s: HTTP %s in %.0f ms (attempt %d)",
            row[ID_COLUMN],
            status,
            (time.time() - started) * 1000,
            attempt + 1,
        )
        if status == 200:
            cards = response.json()["savings"]
            cards = sorted(cards, key=lambda c: c["total_savings_yearly"] or 0, reverse=True)
            result: dict[str, Any] = {ID_COLUMN: row[ID_COLUMN], "status": "ok"}
            for k, card in enumerate(cards[:3], start=1):
                result[f"top{k}_card_name"] = card["card_name"]
                result[f"top{k}_total_savings_yearly"] = card["total_savings_yearly"]
                result[f"top{k}_joining_fees"] = card["joining_fees"]
            return result
        time.sleep(2**attempt)
    return {ID_COLUMN: row[ID_COLUMN], "status": "failed", "error": f"HTTP {status}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--input", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=20)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=args.out / "threadpool.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        import pandas as pd
    except ImportError:
        pd = None
        print(
            "pandas is not installed: reading with polars, writing with openpyxl", file=sys.stderr
        )
    if pd is not None:
        rows = pd.read_csv(args.input, dtype={ID_COLUMN: str}).to_dict("records")
    else:
        import polars as pl

        rows = pl.read_csv(args.input, schema_overrides={ID_COLUMN: pl.String}).to_dicts()
    session = requests.Session()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        results = list(pool.map(lambda row: call_api(session, args.url, row), rows))
    if pd is not None:
        pd.DataFrame(results).to_excel(args.out / "results.xlsx", index=False)
    else:
        _write_openpyxl(results, args.out / "results.xlsx")
    failed = sum(r["status"] == "failed" for r in results)
    reader = "pandas" if pd is not None else "polars"
    print(json.dumps({"ok": len(results) - failed, "failed": failed, "reader": reader}))
    return 0


def _write_openpyxl(results: list[dict[str, Any]], path: Path) -> None:
    from openpyxl import Workbook

    columns = list(dict.fromkeys(k for r in results for k in r))
    wb = Workbook()
    ws = wb.active
    ws.append(columns)
    for r in results:
        ws.append([r.get(c) for c in columns])
    wb.save(path)


if __name__ == "__main__":
    raise SystemExit(main())
