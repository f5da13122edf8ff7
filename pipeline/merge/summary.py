"""The Summary sheet: what a person needs first, the details after, the settings last.

Four columns (A what, B how many, C share, D average), about 90 characters wide, so it reads
without scrolling sideways; longer text wraps inside B-D. From the top:

1. the headline: whether the run is finished and clean, whether the answers were simulated by
   the embedded mock API, the users and their outcomes with shares, the duration and rate;
2. the key tables: the best cards (the Insights' top 5) and the last invocation's figures;
3. the run's details (input, request mapping, endpoint, ...) and the workbook's own;
4. the settings used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from openpyxl.styles import PatternFill
from openpyxl.worksheet.worksheet import Worksheet

from pipeline import schema
from pipeline.merge import drawn
from pipeline.merge.cells import MAX_CELL_CHARS, Changes
from pipeline.merge.drawn import COUNT, DECIMAL, RUPEES, SHARE, put
from pipeline.merge.facts import RunFacts
from pipeline.merge.insights import Insights

WIDTHS = (38, 16, 12, 22)
WIDE = sum(WIDTHS[1:])  # characters of B-D
SUMMARY_CARDS = 5
OUTCOMES = {
    schema.OK: "ok: a best card found",
    schema.NO_CARDS: "no_cards: the API offered no card",
    schema.INVALID_STATE: "invalid: not sent (see Failures)",
    schema.FAILED: "failed: see Failures",
}
SIMULATED = (
    "Simulated answers: the embedded mock API answered every request, not CardGenius. "
    "These cards and savings are made up; do not use them for decisions."
)


@dataclass(frozen=True)
class Found:
    """What the merge found in the result shards."""

    counts: Mapping[str, int]
    expected_rows: int | None
    results_sheets: int
    changes: Changes
    insights: Insights | None = None


def draw_summary(ws: Worksheet, facts: RunFacts, found: Found) -> None:
    """Fill the empty worksheet `ws` with the Summary."""
    changes = found.changes
    drawn.set_up(ws, WIDTHS)
    put(ws, 1, 1, "CardGenius results: summary", changes, font=drawn.TITLE)
    row = 2
    for text, fill in _banners(facts, found):
        drawn.wide_text(ws, row, 1, 4, text, changes, chars=sum(WIDTHS), fill=fill)
        row += 1
    row = _outcomes(ws, row + 1, found)
    row = _timing(ws, row, facts, changes)
    if found.insights is not None and found.insights.best_cards.rows:
        row = _best_cards(ws, row + 1, found.insights, changes)
    sections = (
        ("Last invocation", facts.last_invocation),
        ("Changes since the compared run (the Changes sheet)", facts.changes),
        ("Run", [*facts.run, ("Results sheets", found.results_sheets)]),
        ("Workbook", _workbook_lines(changes)),
        ("Settings used", facts.settings),
    )
    for title, lines in sections:
        if lines:
            row = _lines(ws, row + 1, title, lines, changes)


def _banners(facts: RunFacts, found: Found) -> list[tuple[str, PatternFill]]:
    """The lines above everything: unfinished or failed rows, simulated answers."""
    total = sum(found.counts.values())
    failed = found.counts.get(schema.FAILED, 0)
    lines = []
    if found.expected_rows is not None and total < found.expected_rows:
        lines.append((unfinished_text(total, found.expected_rows), drawn.NOTICE_FILL))
    elif failed:
        text = f"Finished, but {failed:,} rows failed: `pipeline rerun-failed` retries them."
        lines.append((text, drawn.NOTICE_FILL))
    elif found.expected_rows is not None:
        text = "Finished: every user has an outcome, and no request failed."
        lines.append((text, drawn.GOOD_FILL))
    if facts.simulated:
        lines.append((SIMULATED, drawn.NOTICE_FILL))
    return lines


def unfinished_text(found: int, expected: int) -> str:
    return (
        f"Unfinished run: {found:,} of {expected:,} rows have results; "
        "run `pipeline run` again to finish"
    )


def _outcomes(ws: Worksheet, row: int, found: Found) -> int:
    changes = found.changes
    total = sum(found.counts.values())
    states = [*OUTCOMES, *(s for s in found.counts if s not in OUTCOMES)]
    rows: list[Sequence[object]] = [("users", total, 1.0 if total else None)]
    rows += [
        (OUTCOMES.get(s, s), n := found.counts.get(s, 0), n / total if total else None)
        for s in states
    ]
    put(ws, row, 1, "Users", changes, font=drawn.HEADING)
    end = drawn.table(ws, row + 1, ("", "users", "share"), rows, (None, COUNT, SHARE), changes)
    for column in (1, 2, 3):
        ws.cell(row=row + 2, column=column).font = drawn.BOLD
    return end


def _timing(ws: Worksheet, row: int, facts: RunFacts, changes: Changes) -> int:
    """Duration, rate and where the answers came from, under the outcomes."""
    if facts.simulated:
        source: object = "the embedded mock API (simulated)"
    else:
        source = facts.endpoint or ("CardGenius" if facts.simulated is False else None)
    lines: list[tuple[str, object, str | None]] = [
        ("duration", _duration(facts.duration_seconds), None),
        ("rate (users per second)", facts.rate, DECIMAL),
        ("answers from", source, None),
        ("started", facts.started, None),
        ("finished", facts.finished or "not finished", None),
    ]
    for label, value, fmt in lines:
        put(ws, row, 1, label, changes)
        cell = put(ws, row, 2, value, changes, fmt=fmt)
        cell.alignment = drawn.LEFT
        if label == "answers from" and facts.simulated:
            cell.font = drawn.BOLD
        row += 1
    return row


def _best_cards(ws: Worksheet, row: int, insights: Insights, changes: Changes) -> int:
    title = f"Best cards (top {SUMMARY_CARDS} of {insights.with_card:,} users with a best card)"
    put(ws, row, 1, title, changes, font=drawn.HEADING)
    rows = insights.best_cards.rows[:SUMMARY_CARDS]
    header = ("best card", "users", "share", "average net savings (₹ a year)")
    # Card names are counted where the Results hold them, not again here.
    end = drawn.table(ws, row + 1, header, rows, (None, COUNT, SHARE, RUPEES), Changes())
    put(ws, end, 1, "all users with a best card", changes, font=drawn.BOLD)
    put(ws, end, 2, insights.with_card, changes, fmt=COUNT, font=drawn.BOLD)
    put(ws, end, 4, insights.average_net, changes, fmt=RUPEES, font=drawn.BOLD)
    put(ws, end + 1, 1, "More on the Insights sheet.", changes)
    return end + 2


def _lines(
    ws: Worksheet, row: int, title: str, lines: Sequence[tuple[str, object]], changes: Changes
) -> int:
    """A titled list of label / value lines; a value spans B-D, and wraps when long."""
    put(ws, row, 1, title, changes, font=drawn.HEADING)
    for r, (label, value) in enumerate(lines, row + 1):
        put(ws, r, 1, label, changes).alignment = drawn.WRAP
        if isinstance(value, str) and len(value) > WIDTHS[1]:
            drawn.wide_text(ws, r, 2, 4, value, changes, chars=WIDE)
        else:
            fmt = COUNT if isinstance(value, int) else None
            put(ws, r, 2, value, changes, fmt=fmt).alignment = drawn.LEFT
        tall = drawn.lines_of(label, WIDTHS[0])
        if tall > 1 and tall * drawn.LINE_POINTS > (ws.row_dimensions[r].height or 0):
            drawn.fit_height(ws, r, tall)
    return row + 1 + len(lines)


def _workbook_lines(changes: Changes) -> list[tuple[str, object]]:
    # Counted before this sheet is drawn: the Summary's own cells are not in it.
    return [
        ("cells with characters Excel cannot hold (removed)", changes.sanitized),
        (f"cells cut to {MAX_CELL_CHARS:,} characters", changes.truncated),
    ]


def _duration(seconds: float | None) -> str | None:
    """`2 h 05 min`, `3 min 20 s`, `12.5 s`."""
    if seconds is None:
        return None
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"
