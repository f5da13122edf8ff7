"""The merge: result shards to the workbook (`write_workbook`) or to one Parquet or CSV file.

workbook.py  the workbook's layout: Summary, Insights, Results (Results 2, ...), Failures
sheets.py    worksheets as streamed XML: head, rows, tail; splitting past a row limit
cells.py     how values become cells: types, text-safe strings, Excel's limits
package.py   the .xlsx zip: openpyxl's parts (and its drawn sheets) around our streamed ones
summary.py   the Summary sheet (facts.py: what it says about the run, from run.json)
insights.py  the Insights' tables, from the result shards with polars
charts.py    the Insights sheet: those tables and their native charts
drawn.py     cells, styles and small tables of the sheets openpyxl draws
export.py    the Parquet and CSV exports of every row
shards.py    reading result shards: each output's columns, batches, counts by state
"""

from typing import TYPE_CHECKING, Any

from pipeline.merge.cells import MAX_CELL_CHARS, MONEY_FORMAT, TRUNCATED_SUFFIX
from pipeline.merge.export import ExportReport, export_csv, export_parquet
from pipeline.merge.shards import read_outcome_counts

if TYPE_CHECKING:
    from pipeline.merge.workbook import EXCEL_MAX_DATA_ROWS, MergeReport, write_workbook

_WORKBOOK = {"EXCEL_MAX_DATA_ROWS", "MergeReport", "write_workbook"}


def __getattr__(name: str) -> Any:
    """The workbook writer on first use: it imports openpyxl (~0.15 s), which a run needs only
    at its end and `status` never."""
    if name in _WORKBOOK:
        from pipeline.merge import workbook

        return getattr(workbook, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EXCEL_MAX_DATA_ROWS",
    "MAX_CELL_CHARS",
    "MONEY_FORMAT",
    "TRUNCATED_SUFFIX",
    "ExportReport",
    "MergeReport",
    "export_csv",
    "export_parquet",
    "read_outcome_counts",
    "write_workbook",
]
