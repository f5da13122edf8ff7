"""The workbook: result shards merged into `Summary`, `Results` (`Results 2`, ...) and `Failures`.

This module owns the workbook's layout (CONTRACT.md, "The output folder"): Summary first (rows
by state, the run's facts and settings as the caller gives them, how many Results sheets there
are, how many cells had to change), then Results (ok and no_cards rows, `max_rows_per_sheet`
data rows a sheet), then Failures (every other row). Every row of every shard lands exactly
once, in the order of the shards and of their rows.

The file is written through `store.atomic_path`: a kill or an error leaves the old file or the
new one. How values become cells is cells.py; sheets' XML is sheets.py; the zip is package.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow.compute as pc

from pipeline import schema
from pipeline.merge import shards
from pipeline.merge.cells import MAX_CELL_CHARS, Changes
from pipeline.merge.package import Package
from pipeline.merge.sheets import Sheet, SplitSheet, key_value_sheet
from pipeline.state import store

SUMMARY, RESULTS, FAILURES = "Summary", "Results", "Failures"
EXCEL_MAX_DATA_ROWS = 1_048_575  # Excel's 1,048,576 rows, less the header


@dataclass(frozen=True)
class MergeReport:
    """What `write_workbook` wrote. `seconds` is wall time; counts are rows unless named cells."""

    ok: int
    no_cards: int
    invalid: int
    failed: int
    total: int
    results_rows: int
    results_sheets: int
    failures: int
    cells_sanitized: int
    cells_truncated: int
    seconds: float


def write_workbook(
    dest: Path,
    shard_paths: Sequence[Path],
    *,
    id_column: str,
    value_columns: Sequence[str],
    facts: Sequence[tuple[str, object]],
    expected_rows: int | None = None,
    max_rows_per_sheet: int = EXCEL_MAX_DATA_ROWS,
    clock: Callable[[], float] = time.perf_counter,
) -> MergeReport:
    """Write the workbook `dest` from result shards given in input order.

    `facts` are (key, value) lines for the Summary sheet, formatted by the caller.
    `expected_rows`: rows the run's input has; when the shards hold fewer, Summary says the run
    is unfinished. None: not known, say nothing. `max_rows_per_sheet`: data rows per Results
    sheet before the next one (`Results 2`, ...) starts.
    """
    if not 1 <= max_rows_per_sheet <= EXCEL_MAX_DATA_ROWS:
        raise ValueError(
            f"max_rows_per_sheet ({max_rows_per_sheet}) must be from 1 to {EXCEL_MAX_DATA_ROWS}"
        )
    started = clock()
    columns = shards.columns_of(shard_paths, id_column, value_columns)
    changes = Changes()
    with store.atomic_path(dest) as tmp:
        book = Package(tmp)
        try:
            counts, results, failures = _write_sheets(
                book, shard_paths, columns, changes, max_rows_per_sheet
            )
            lines = _summary_lines(counts, facts, len(results.sheets), changes, expected_rows)
            book.add(1, key_value_sheet(lines, book.styles, changes))
            sheets = [*results.sheets, failures]
            book.finish([(SUMMARY, None), *((s.title, s.filter_ref) for s in sheets)])
        except BaseException:
            book.abort()
            raise
    return MergeReport(
        ok=counts[schema.OK],
        no_cards=counts[schema.NO_CARDS],
        invalid=counts[schema.INVALID_STATE],
        failed=counts[schema.FAILED],
        total=sum(counts.values()),
        results_rows=results.rows,
        results_sheets=len(results.sheets),
        failures=failures.rows,
        cells_sanitized=changes.sanitized,
        cells_truncated=changes.truncated,
        seconds=clock() - started,
    )


def _write_sheets(
    book: Package,
    shard_paths: Sequence[Path],
    columns: shards.Columns,
    changes: Changes,
    max_rows: int,
) -> tuple[Counter[str], SplitSheet, Sheet]:
    """Write Results (at positions 2, 3, ...: after Summary) and Failures (after them)."""

    def results_sheet(title: str, index: int) -> Sheet:
        spool = book.spool()
        done = partial(book.add, index + 2, spool)
        return Sheet(title, columns.results, book.styles, changes, spool.write, done)

    results = SplitSheet(RESULTS, max_rows, results_sheet)
    spool = book.spool()
    failures = Sheet(FAILURES, columns.failures, book.styles, changes, spool.write)
    counts = _stream_shards(shard_paths, columns, results, failures)
    results.close()
    failures.close()
    book.add(len(results.sheets) + 2, spool)
    return counts, results, failures


def _stream_shards(
    shard_paths: Sequence[Path], columns: shards.Columns, results: SplitSheet, failures: Sheet
) -> Counter[str]:
    """Send each shard's rows, in order, to Results (ok, no_cards) or Failures (any other
    status, even an unexpected or missing one); count rows by status."""
    counts: Counter[str] = Counter()
    read = columns.read
    status_at = read.get_field_index(schema.STATUS)
    for path in shard_paths:
        for batch in shards.batches(path, read):
            status = batch.column(status_at)
            shards.count_states(status, counts)
            is_result = shards.is_result(status)
            kept = pc.sum(is_result).as_py() or 0
            if kept:
                rows = batch if kept == batch.num_rows else batch.filter(is_result)
                results.add(rows.select(columns.results.names))
            if kept < batch.num_rows:
                failures.add(batch.filter(pc.invert(is_result)).select(columns.failures.names))
    return counts


def _summary_lines(
    counts: Counter[str],
    facts: Sequence[tuple[str, object]],
    results_sheets: int,
    changes: Changes,
    expected_rows: int | None,
) -> list[tuple[str, object]]:
    """Summary's (key, value) lines; an unfinished run says so on the first line."""
    total = sum(counts.values())
    lines: list[tuple[str, object]] = []
    if expected_rows is not None and total < expected_rows:
        lines.append(("Unfinished run", _unfinished(total, expected_rows)))
    lines += [(f"rows {s}", counts[s]) for s in schema.STATES]
    lines += [(f"rows {s}", n) for s, n in counts.items() if s not in schema.STATES]
    lines.append(("rows total", total))
    lines += [(str(key), value) for key, value in facts]
    lines.append(("Results sheets", results_sheets))
    lines.append(("cells with characters Excel cannot hold (removed)", changes.sanitized))
    lines.append((f"cells cut to {MAX_CELL_CHARS:,} characters", changes.truncated))
    return lines


def _unfinished(found: int, expected: int) -> str:
    return (
        f"Unfinished run: {found:,} of {expected:,} rows have results; "
        "run `pipeline run` again to finish"
    )
