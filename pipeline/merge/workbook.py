"""The workbook: result shards merged into `Summary`, `Insights`, `Results` (`Results 2`, ...)
and `Failures`.

This module owns the workbook's layout: Summary first (summary.py: the headline, the key
tables, the run's facts, the settings), then Insights (charts.py: what the results say about
cards, with native charts), then Results (ok and no_cards rows, `max_rows_per_sheet` data rows
a sheet), then Failures (every other row). Every row of every shard lands exactly once, in the
order of the shards and of their rows.

Results and Failures, the big sheets, are streamed as XML (sheets.py, cells.py); Summary and
Insights are small and drawn by openpyxl (package.py puts the two kinds together). The file is
written through `atomic.atomic_path`: a kill or an error leaves the old file or the new one.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow.compute as pc

from pipeline import schema
from pipeline.merge import shards
from pipeline.merge.cells import Changes
from pipeline.merge.charts import draw_insights
from pipeline.merge.facts import RunFacts
from pipeline.merge.insights import Insights, compute_insights
from pipeline.merge.package import Drawn, Package, Streamed
from pipeline.merge.sheets import Sheet, SplitSheet
from pipeline.merge.summary import Found, draw_summary
from pipeline.state import atomic

SUMMARY, INSIGHTS, RESULTS, FAILURES = "Summary", "Insights", "Results", "Failures"
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
    insights: Insights | None = None


def write_workbook(
    dest: Path,
    shard_paths: Sequence[Path],
    *,
    id_column: str,
    value_columns: Sequence[str],
    facts: RunFacts | Sequence[tuple[str, object]] = (),
    request: Mapping[str, Sequence[str]] | None = None,
    insights: bool = True,
    expected_rows: int | None = None,
    max_rows_per_sheet: int = EXCEL_MAX_DATA_ROWS,
    tables: Sequence[tuple[str, Path]] = (),
    clock: Callable[[], float] = time.perf_counter,
) -> MergeReport:
    """Write the workbook `dest` from result shards given in input order.

    `facts`: what the Summary says about the run; (label, value) lines are taken as the run's
    details. `request`: the run's API field -> input columns mapping (the Insights' spend
    bands); None: every value column is a monthly spend. `insights`: False leaves the Insights
    sheet out. `expected_rows`: rows the run's input has; when the shards hold fewer, Summary
    says the run is unfinished. None: not known, say nothing. `max_rows_per_sheet`: data rows
    per Results sheet before the next one (`Results 2`, ...) starts. `tables`: (title, Parquet
    file) of sheets to add after Failures, each file's columns as they are (Changes).
    """
    _check_rows_per_sheet(max_rows_per_sheet)
    started = clock()
    columns = shards.columns_of(shard_paths, id_column, value_columns)
    mapping = None
    if insights:
        mapping = request if request is not None else {c: (c,) for c in value_columns}
    with atomic.atomic_path(dest) as tmp:
        book = Package(tmp)
        try:
            written = _fill(
                book,
                shard_paths,
                columns,
                facts=facts,
                mapping=mapping,
                expected_rows=expected_rows,
                tables=tables,
                max_rows=max_rows_per_sheet,
            )
        except BaseException:
            book.abort()
            raise
    return written.report(clock() - started)


def _check_rows_per_sheet(max_rows: int) -> None:
    if not 1 <= max_rows <= EXCEL_MAX_DATA_ROWS:
        raise ValueError(f"max_rows_per_sheet ({max_rows}) must be from 1 to {EXCEL_MAX_DATA_ROWS}")


@dataclass(frozen=True)
class _Written:
    """What the sheets hold, once the workbook is written."""

    counts: Counter[str]
    results: SplitSheet
    failures: Sheet
    changes: Changes
    insights: Insights | None

    def report(self, seconds: float) -> MergeReport:
        counts = self.counts
        return MergeReport(
            ok=counts[schema.OK],
            no_cards=counts[schema.NO_CARDS],
            invalid=counts[schema.INVALID_STATE],
            failed=counts[schema.FAILED],
            total=sum(counts.values()),
            results_rows=self.results.rows,
            results_sheets=len(self.results.sheets),
            failures=self.failures.rows,
            cells_sanitized=self.changes.sanitized,
            cells_truncated=self.changes.truncated,
            seconds=seconds,
            insights=self.insights,
        )


def _fill(
    book: Package,
    shard_paths: Sequence[Path],
    columns: shards.Columns,
    *,
    facts: RunFacts | Sequence[tuple[str, object]],
    mapping: Mapping[str, Sequence[str]] | None,
    expected_rows: int | None,
    tables: Sequence[tuple[str, Path]],
    max_rows: int,
) -> _Written:
    """Every sheet of the workbook, in its place: Summary, Insights (unless `mapping` is
    None), Results, Failures, then `tables`. The big sheets are written first: Summary
    reports what they hold."""
    run_facts = facts if isinstance(facts, RunFacts) else RunFacts(run=tuple(facts))
    changes = Changes()
    first_results = 2 if mapping is None else 3
    counts, results, failures = _write_sheets(
        book, shard_paths, columns, changes, max_rows, first_results
    )
    found_insights = None if mapping is None else compute_insights(shard_paths, mapping)
    found = Found(counts, expected_rows, len(results.sheets), changes, found_insights)
    sheets = [
        *_drawn(run_facts, found),
        *(Streamed(s.title, s.filter_ref) for s in results.sheets),
    ]
    sheets.append(Streamed(failures.title, failures.filter_ref))
    for title, path in tables:
        table = _table_sheet(book, len(sheets) + 1, title, path, changes, max_rows)
        sheets.append(Streamed(table.title, table.filter_ref))
    book.finish(sheets)
    return _Written(counts, results, failures, changes, found_insights)


def _drawn(facts: RunFacts, found: Found) -> list[Streamed | Drawn]:
    """Summary, and Insights when they were computed."""
    sheets: list[Streamed | Drawn] = [
        Drawn(SUMMARY, partial(draw_summary, facts=facts, found=found))
    ]
    if found.insights is not None:
        # The Insights repeat text the Results hold (card names): it is counted there, once.
        draw = partial(draw_insights, insights=found.insights, changes=Changes())
        sheets.append(Drawn(INSIGHTS, draw))
    return sheets


def _write_sheets(
    book: Package,
    shard_paths: Sequence[Path],
    columns: shards.Columns,
    changes: Changes,
    max_rows: int,
    first: int,
) -> tuple[Counter[str], SplitSheet, Sheet]:
    """Write Results (at positions `first`, `first` + 1, ...) and Failures (after them)."""

    def results_sheet(title: str, index: int) -> Sheet:
        spool = book.spool()
        done = partial(book.add, first + index, spool)
        return Sheet(title, columns.results, book.styles, changes, spool.write, done)

    results = SplitSheet(RESULTS, max_rows, results_sheet)
    spool = book.spool()
    failures = Sheet(FAILURES, columns.failures, book.styles, changes, spool.write)
    counts = _stream_shards(shard_paths, columns, results, failures)
    results.close()
    failures.close()
    book.add(first + len(results.sheets), spool)
    return counts, results, failures


def _table_sheet(
    book: Package, position: int, title: str, path: Path, changes: Changes, max_rows: int
) -> Sheet:
    """The sheet `title` at `position`: the rows of the Parquet file `path`, batch by batch, up
    to `max_rows` (the file beside the workbook has them all)."""
    import pyarrow.parquet as pq

    spool = book.spool()
    source = pq.ParquetFile(path)
    sheet = Sheet(title, source.schema_arrow, book.styles, changes, spool.write)
    for batch in source.iter_batches(shards.BATCH_ROWS):
        sheet.add(batch.slice(0, max_rows - sheet.rows))
    sheet.close()
    book.add(position, spool)
    return sheet


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
