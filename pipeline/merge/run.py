"""The merge entry: the run's result shards to the workbook, or to one Parquet or CSV file.

`merge_run(config, layout, fmt)` reads run.json for the Summary sheet's facts (`run_facts`) and
hands the result shards, in input order, to the workbook writer or the exporter.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.config import Config
from pipeline.merge.facts import RunFacts
from pipeline.state.runinfo import now_iso
from pipeline.state.store import RunLayout, read_run

if TYPE_CHECKING:
    from pipeline.merge.export import ExportReport
    from pipeline.merge.workbook import MergeReport

log = logging.getLogger("pipeline")

MERGE_FORMATS = ("xlsx", "parquet", "csv")


def merge_run(config: Config, layout: RunLayout, fmt: str = "xlsx") -> MergeReport | ExportReport:
    """Write the run's results from the result shards that exist now: the workbook (`xlsx`), or
    every row as `parquet` or `csv` beside it, named like it (`results.parquet`)."""
    # Imported here: openpyxl and the writer are ~0.2 s a run needs only at its end.
    from pipeline.merge import export_csv, export_parquet, write_workbook

    if fmt not in MERGE_FORMATS:
        raise ValueError(f"format {fmt!r}: must be one of {', '.join(MERGE_FORMATS)}")
    shard_paths = [layout.result_shard(name) for name in layout.result_shards()]
    workbook = layout.root / config.output.excel
    id_column, value_columns = config.input.id_column, config.value_columns
    started = time.monotonic()
    report: MergeReport | ExportReport
    if fmt == "xlsx":
        info = read_run(layout) or {}
        rows = info.get("input", {}).get("rows")
        dest = workbook
        report = write_workbook(
            dest,
            shard_paths,
            id_column=id_column,
            value_columns=value_columns,
            facts=run_facts(info, rows),
            request=config.request,
            expected_rows=rows,
            tables=_changes_sheet(info, layout),
        )
    else:
        export = export_parquet if fmt == "parquet" else export_csv
        dest = workbook.with_suffix(f".{fmt}")
        report = export(dest, shard_paths, id_column=id_column, value_columns=value_columns)
    log.info("Wrote %s in %.1fs", dest, time.monotonic() - started)
    return report


def _changes_sheet(info: dict[str, Any], layout: RunLayout) -> list[tuple[str, Path]]:
    """The Changes sheet, after `run --compare-with` or `pipeline compare` (compare.py)."""
    from pipeline.compare import CHANGES_FILE

    path = layout.root / CHANGES_FILE
    return [("Changes", path)] if info.get("changes") and path.exists() else []


def _changes_facts(info: dict[str, Any]) -> list[tuple[str, object]]:
    """The Summary's lines about the last comparison with an older run, if there was one."""
    found = info.get("changes")
    if not found:
        return []
    facts: list[tuple[str, object]] = [("compared with", found["against"])]
    facts.append(("savings threshold (rupees)", found["min_change"]))
    facts += [(f"users {kind}", count) for kind, count in found["counts"].items()]
    return facts


def run_facts(info: dict[str, Any], rows: int | None) -> RunFacts:
    """What the Summary says about the run, from run.json: timing, where the answers came
    from, what defines the results, the last invocation's figures (requests, retries, latency,
    ...) and the settings used."""
    elapsed = float(info.get("elapsed_seconds", 0.0))
    fp = info.get("fingerprint", {})
    endpoint = fp.get("endpoint", {})
    run: list[tuple[str, object]] = [
        ("input", fp.get("input", {}).get("path")),
        ("input rows", rows),
        ("merged", now_iso()),
        ("id column", fp.get("id_column")),
    ]
    run += [(f"request.{k}", " + ".join(v)) for k, v in fp.get("request", {}).items()]
    run += [(f"endpoint.{k}", v) for k, v in endpoint.items()]
    run += [("top_n", fp.get("top_n")), ("limit", fp.get("limit"))]
    settings = [
        (f"{table}.{key}", value)
        for table, values in info.get("settings", {}).items()
        for key, value in values.items()
    ]
    return RunFacts(
        started=info.get("started_at"),
        finished=info.get("finished_at"),
        duration_seconds=round(elapsed, 1) if info else None,
        rate=round(rows / elapsed, 2) if rows and elapsed else None,
        simulated=bool(endpoint.get("mock")) if endpoint else None,
        endpoint=endpoint.get("url"),
        run=run,
        last_invocation=[(str(label), value) for label, value in info.get("last_invocation", ())],
        settings=settings,
        changes=_changes_facts(info),
    )
