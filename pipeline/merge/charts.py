"""The Insights sheet: each table of `insights.py` on the left, its native chart beside it.

The charts are openpyxl's (`openpyxl.chart`): Excel and LibreOffice draw them from the table's
cells (each series is a reference to a range of the sheet), so a reader can check every bar
against its number, and copying a table keeps its figures. Blocks go down the sheet, each as
tall as its table or its chart, whichever is taller; columns A-D hold the tables, the charts
start at column F.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from openpyxl.chart import BarChart, PieChart, Reference
from openpyxl.chart._chart import ChartBase
from openpyxl.chart.data_source import AxDataSource, StrRef
from openpyxl.chart.label import DataLabelList
from openpyxl.worksheet.worksheet import Worksheet

from pipeline.merge import drawn
from pipeline.merge.cells import Changes
from pipeline.merge.drawn import COUNT, RUPEES, SHARE, put
from pipeline.merge.insights import Insights, Table

WIDTHS = (40, 12, 16, 18)
CHART_COLUMN = "F"
CHART_WIDTH_CM = 17.0
CM_PER_ROW = drawn.LINE_POINTS * 2.54 / 72
FORMATS = {"users": COUNT, "share": SHARE}


@dataclass(frozen=True)
class Block:
    """A table and how to chart it: `column` (1-based) holds the values charted."""

    table: Table
    make: Callable[[], ChartBase]
    column: int
    height_cm: float = 7.5


def draw_insights(ws: Worksheet, insights: Insights, changes: Changes) -> None:
    """Fill the empty worksheet `ws` with the Insights' tables and charts."""
    drawn.set_up(ws, WIDTHS, landscape=True)
    put(ws, 1, 1, "CardGenius results: insights", changes, font=drawn.TITLE)
    note = (
        f"{insights.users:,} users, {insights.with_card:,} of them with a best card (the card "
        "with the highest net savings: yearly savings - joining fee + extra benefits). Each "
        "chart is drawn from the table beside it. A band runs from its first figure up to, not "
        "including, the next; monthly spend adds yearly spends over 12."
    )
    drawn.wide_text(ws, 2, 1, 4, note, changes, chars=sum(WIDTHS))
    row = 4
    for block in _blocks(insights):
        row = _draw_block(ws, row, block, changes)


def _blocks(insights: Insights) -> list[Block]:
    cards = len(insights.best_cards.rows)
    return [
        Block(insights.best_cards, _bar("bar", sorted_top_down=True), 2, max(7.5, 0.62 * cards)),
        Block(insights.savings, _bar("col", gap=30), 2),
        Block(insights.spend, _bar("col", money=True), 3),
        Block(insights.fees, _pie, 2),
        Block(insights.outcomes, _bar("col", labels=True), 2),
    ]


def _draw_block(ws: Worksheet, row: int, block: Block, changes: Changes) -> int:
    """The block's title, table and chart from `row`; return the row of the next block."""
    t = block.table
    put(ws, row, 1, t.title, changes, font=drawn.HEADING)
    formats = [FORMATS.get(name, RUPEES if "₹ a year" in name else None) for name in t.header]
    end = drawn.table(ws, row + 1, t.header, t.rows, formats, changes)
    chart = block.make()
    chart.title = t.title
    chart.width, chart.height = CHART_WIDTH_CM, block.height_cm
    first, last = row + 2, end - 1
    if last >= first:
        values = Reference(ws, min_col=block.column, min_row=row + 1, max_row=last)
        chart.add_data(values, titles_from_data=True)
        # Categories are text: a string reference (openpyxl's set_categories makes a number
        # one, which spreadsheets then read as text anyway).
        names = Reference(ws, min_col=1, min_row=first, max_row=last)
        for series in chart.series:
            series.cat = AxDataSource(strRef=StrRef(f=str(names)))
    ws.add_chart(chart, f"{CHART_COLUMN}{row}")
    chart_rows = math.ceil(block.height_cm / CM_PER_ROW)
    return max(end, row + chart_rows) + 2


def _bar(
    direction: str,
    *,
    gap: int = 60,
    money: bool = False,
    labels: bool = False,
    sorted_top_down: bool = False,
) -> Callable[[], ChartBase]:
    """A bar ("bar": horizontal) or column ("col") chart of one series, without a legend."""

    def make() -> ChartBase:
        chart = BarChart()
        chart.type = direction
        chart.gapWidth = gap
        chart.legend = None
        chart.style = 10
        # openpyxl leaves the axes' `delete` unset; Excel then hides them.
        chart.x_axis.delete = False
        chart.y_axis.delete = False
        chart.y_axis.number_format = RUPEES if money else COUNT
        chart.y_axis.majorGridlines = None if direction == "bar" else chart.y_axis.majorGridlines
        chart.y_axis.scaling.min = 0  # bars measured from 0, never from an automatic minimum
        if sorted_top_down:  # the first line of the table at the top, as it reads
            chart.x_axis.scaling.orientation = "maxMin"
            chart.y_axis.crosses = "max"  # which keeps the value axis at the bottom
        if labels:
            chart.dataLabels = _labels(showVal=True)
        return chart

    return make


def _pie() -> ChartBase:
    chart = PieChart()
    chart.dataLabels = _labels(showPercent=True)
    return chart


def _labels(**shown: bool) -> DataLabelList:
    """Data labels showing only `shown`: left unset, LibreOffice adds the series' name and
    the legend key."""
    hidden = dict.fromkeys(("showVal", "showPercent", "showCatName", "showSerName"), False)
    return DataLabelList(**(hidden | {"showLegendKey": False} | shown))
