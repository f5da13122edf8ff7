"""Tests of pipeline.merge: result shards made by hand, the workbook read back with openpyxl."""

from __future__ import annotations

import random
import tempfile
import zipfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook
from openpyxl.utils import get_column_letter

from pipeline import schema
from pipeline.config import Config, build_config
from pipeline.errors import RunStateError
from pipeline.merge import MergeReport, read_outcome_counts, write_workbook
from pipeline.merge.run import merge_run
from pipeline.merge.summary import SIMULATED
from pipeline.state.store import RunLayout, write_json_atomic, write_parquet_atomic

ID = "user_id"
VALUES = ("avg_amazon_gmv", "avg_flipkart_gmv")
DERIVED: list[tuple[str, pa.DataType]] = [
    ("cards_returned", pa.int32()),
    ("best_card_savings_gap", pa.float64()),
    ("top1_card_id", pa.int64()),
    ("top1_card_name", pa.string()),
    ("top1_net_savings", pa.float64()),
]
# Results: when each answer came and whether the answer store gave it, then the cards.
RESULT_HEADER = [ID, "status", *VALUES, "answered_at", "reused", *(name for name, _ in DERIVED)]
FAILURE_HEADER = [ID, "status", "http_status", "attempts", "error"]


def row(i: int, status: str = schema.OK, **values: Any) -> dict[str, Any]:
    """One result-shard row for user `i` (id zero-padded) in `status`, with usual values."""
    base: dict[str, Any] = {schema.ROW: i, ID: f"{i:05d}", VALUES[0]: 1000.0 + i, VALUES[1]: 0.5}
    if status == schema.OK:
        base |= {"http_status": 200, "attempts": 1, "latency_ms": 12.5, "cards_returned": 15}
        base |= {"best_card_savings_gap": 1234.5, "top1_card_id": 114}
        base |= {"top1_card_name": f"Card {i}", "top1_net_savings": 18080.25}
    elif status == schema.NO_CARDS:
        base |= {"http_status": 200, "attempts": 1, "latency_ms": 9.0, "cards_returned": 0}
    elif status == schema.FAILED:
        base |= {"http_status": 500, "attempts": 4, "error": "HTTP 500: upstream error"}
    else:
        base |= {"attempts": 0, "error": "avg_amazon_gmv: 'abc' is not a number"}
    return base | {schema.STATUS: status} | values


def make_shard(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    shard_schema = schema.result_schema(ID, VALUES, DERIVED)
    columns = {f.name: [r.get(f.name) for r in rows] for f in shard_schema}
    pq.write_table(pa.table(columns, schema=shard_schema), path)
    return path


def merge(tmp_path: Path, shards: Sequence[Sequence[dict[str, Any]]], **kw: Any) -> MergeReport:
    paths = [make_shard(tmp_path / f"shard-{i:05d}.parquet", s) for i, s in enumerate(shards)]
    kw.setdefault("facts", [])
    return write_workbook(tmp_path / "out.xlsx", paths, id_column=ID, value_columns=VALUES, **kw)


def sheet_rows(path: Path, title: str) -> list[tuple[Any, ...]]:
    return list(load_workbook(path)[title].iter_rows(values_only=True))


def summary(path: Path) -> dict[Any, Any]:
    """The Summary's lines as label (column A) -> value (column B)."""
    return {line[0]: line[1] for line in sheet_rows(path, "Summary") if line[0] is not None}


def banners(path: Path) -> list[str]:
    """The lines above the Summary's first table (after its title)."""
    lines = [line[0] for line in sheet_rows(path, "Summary")[1:]]
    return lines[: lines.index(None)]


def results_cell(tmp_path: Path, column: str, **values: Any) -> Any:
    """The Results cell of `column` for one ok row with `values`."""
    merge(tmp_path, [[row(0, **values)]])
    ws = load_workbook(tmp_path / "out.xlsx")["Results"]
    return ws.cell(row=2, column=RESULT_HEADER.index(column) + 1)


def test_sheets_in_order_each_row_once_in_input_order(tmp_path: Path) -> None:
    states = [schema.OK, schema.FAILED, schema.NO_CARDS, schema.INVALID_STATE, schema.OK]
    rows = [row(i, states[i % len(states)]) for i in range(23)]
    report = merge(tmp_path, [rows[:10], rows[10:11], rows[11:]])

    book = load_workbook(tmp_path / "out.xlsx")
    assert book.sheetnames == ["Summary", "Insights", "Results", "Failures"]
    results, failures = sheet_rows(tmp_path / "out.xlsx", "Results"), book["Failures"]
    failure_rows = list(failures.iter_rows(values_only=True))
    assert results[0] == tuple(RESULT_HEADER)
    assert failure_rows[0] == tuple(FAILURE_HEADER)
    wanted = {schema.OK, schema.NO_CARDS}
    assert [r[0] for r in results[1:]] == [r[ID] for r in rows if r["status"] in wanted]
    assert [r[0] for r in failure_rows[1:]] == [r[ID] for r in rows if r["status"] not in wanted]
    assert {r[1] for r in results[1:]} == wanted
    assert {r[1] for r in failure_rows[1:]} == {schema.FAILED, schema.INVALID_STATE}
    assert (report.ok, report.no_cards, report.failed, report.invalid) == (9, 5, 5, 4)
    assert (report.total, report.results_rows, report.failures) == (23, 14, 9)
    assert report.results_sheets == 1
    assert summary(tmp_path / "out.xlsx")["ok: a best card found"] == 9


def test_failures_hold_status_http_status_attempts_error(tmp_path: Path) -> None:
    merge(tmp_path, [[row(1, schema.FAILED), row(2, schema.INVALID_STATE)]])
    failures = sheet_rows(tmp_path / "out.xlsx", "Failures")
    assert failures[1] == ("00001", "failed", 500, 4, "HTTP 500: upstream error")
    assert failures[2] == ("00002", "invalid", None, 0, "avg_amazon_gmv: 'abc' is not a number")


def test_no_cards_row_is_in_results_with_empty_card_columns(tmp_path: Path) -> None:
    merge(tmp_path, [[row(7, schema.NO_CARDS)]])
    (line,) = sheet_rows(tmp_path / "out.xlsx", "Results")[1:]
    values = dict(zip(RESULT_HEADER, line, strict=True))
    assert values["status"] == "no_cards"
    assert values["cards_returned"] == 0
    assert values["top1_card_name"] is values["top1_card_id"] is None
    assert values["best_card_savings_gap"] is None


def test_ids_stay_text_with_leading_zeros(tmp_path: Path) -> None:
    cell = results_cell(tmp_path, ID, user_id="000123")
    assert (cell.value, cell.data_type) == ("000123", "s")
    card = results_cell(tmp_path, "top1_card_id", top1_card_id=12345678901234567)
    assert (card.value, card.data_type) == ("12345678901234567", "s")  # not 1.23457E+16


def test_numbers_are_numeric_cells_money_formatted_counts_integers(tmp_path: Path) -> None:
    merge(tmp_path, [[row(0)]])
    ws = load_workbook(tmp_path / "out.xlsx")["Results"]
    cells = {name: ws.cell(row=2, column=i + 1) for i, name in enumerate(RESULT_HEADER)}
    for name in (VALUES[0], "best_card_savings_gap", "top1_net_savings"):
        # Excel holds every number as a double and writes 1000.0 as "1000", as we do; openpyxl
        # reads that back as an int, which is the same number.
        assert cells[name].data_type == "n"
        assert isinstance(cells[name].value, int | float)
        assert cells[name].number_format == "#,##0.00"
    assert cells["top1_net_savings"].value == 18080.25
    assert cells[VALUES[0]].value == 1000.0 and cells[VALUES[1]].value == 0.5
    assert (cells["cards_returned"].data_type, cells["cards_returned"].value) == ("n", 15)
    assert cells["cards_returned"].number_format == "General"
    # A card's id is text, as the user's is: Excel neither sums nor rounds it.
    assert (cells["top1_card_id"].data_type, cells["top1_card_id"].value) == ("s", "114")


def test_null_and_nan_are_empty_cells(tmp_path: Path) -> None:
    cell = results_cell(tmp_path, "top1_net_savings", top1_net_savings=float("nan"))
    assert cell.value is None
    gap = results_cell(tmp_path, "best_card_savings_gap", best_card_savings_gap=None)
    assert gap.value is None


@pytest.mark.parametrize(
    "text",
    ['=HYPERLINK("http://x","y")', "=1+1", "+91 98765", "-5", "@SUM(A1)", "#N/A", "=", " pad "],
)
def test_formula_like_strings_stay_text(tmp_path: Path, text: str) -> None:
    cell = results_cell(tmp_path, "top1_card_name", top1_card_name=text)
    assert (cell.value, cell.data_type) == (text, "s")


def test_unicode_emoji_and_whitespace_survive(tmp_path: Path) -> None:
    text = "₹ बचत 💳😀 <b>&amp;</b> tab\there\r\nCRLF 'q' \"dq\""
    cell = results_cell(tmp_path, "top1_card_name", top1_card_name=text)
    assert cell.value == text
    assert merge(tmp_path, [[row(0, top1_card_name=text)]]).cells_sanitized == 0


def test_control_characters_removed_and_counted(tmp_path: Path) -> None:
    names = ["a\x00b\x1fc", "bell\x07", "fine", "non-char\ufffe\uffff"]
    rows = [row(i, top1_card_name=name) for i, name in enumerate(names)]
    rows.append(row(9, schema.FAILED, error="bad\x0bbody"))
    report = merge(tmp_path, [rows])
    results = sheet_rows(tmp_path / "out.xlsx", "Results")
    column = RESULT_HEADER.index("top1_card_name")
    assert [r[column] for r in results[1:]] == ["abc", "bell", "fine", "non-char"]
    assert sheet_rows(tmp_path / "out.xlsx", "Failures")[1][4] == "badbody"
    assert report.cells_sanitized == 4
    assert summary(tmp_path / "out.xlsx")["cells with characters Excel cannot hold (removed)"] == 4


def test_any_string_survives_or_loses_only_what_xml_cannot_hold(tmp_path: Path) -> None:
    rng = random.Random(3)
    pool = [chr(c) for c in range(0x20)] + list("=+-@#&<>\"' ]]>;é₹😀") + ["\ufffe", "\uffff"]
    names = ["".join(rng.choices(pool, k=rng.randint(1, 12))) for _ in range(300)]
    facts = [("lone surrogate", "a\ud800b"), ("nan", float("nan"))]
    merge(tmp_path, [[row(i, top1_card_name=name) for i, name in enumerate(names)]], facts=facts)

    cannot = {chr(c) for c in range(0x20)} - {"\t", "\n", "\r"} | {"\ufffe", "\uffff"}
    column = RESULT_HEADER.index("top1_card_name")
    got = [r[column] for r in sheet_rows(tmp_path / "out.xlsx", "Results")[1:]]
    assert got == ["".join(c for c in n if c not in cannot) for n in names]
    assert summary(tmp_path / "out.xlsx")["lone surrogate"] == "ab"
    assert summary(tmp_path / "out.xlsx")["nan"] is None  # as on Results: no cell


def test_long_string_truncated_and_counted(tmp_path: Path) -> None:
    long_text, emoji_text = "x" * 40_000, "😀" * 20_000  # an emoji is 2 of Excel's characters
    rows = [row(0, top1_card_name=long_text), row(1, top1_card_name=emoji_text)]
    rows.append(row(2, top1_card_name="y" * 32_767))
    report = merge(tmp_path, [rows])
    column = RESULT_HEADER.index("top1_card_name")
    first, second, third = (r[column] for r in sheet_rows(tmp_path / "out.xlsx", "Results")[1:])
    assert len(first) == 32_767 and first.endswith("…[truncated]")
    assert first.startswith("x" * 30_000)
    assert len(second.encode("utf-16-le")) <= 2 * 32_767 and second.endswith("…[truncated]")
    assert second.startswith("😀" * 16_000)
    assert third == "y" * 32_767
    assert report.cells_truncated == 2
    assert summary(tmp_path / "out.xlsx")["cells cut to 32,767 characters"] == 2


def test_results_split_every_max_rows_each_with_header(tmp_path: Path) -> None:
    rows = [row(i, schema.FAILED if i == 4 else schema.OK) for i in range(9)]
    report = merge(tmp_path, [rows[:2], rows[2:]], max_rows_per_sheet=3)

    book = load_workbook(tmp_path / "out.xlsx")
    assert book.sheetnames[2:] == ["Results", "Results 2", "Results 3", "Failures"]
    ids = []
    for title in ("Results", "Results 2", "Results 3"):
        lines = list(book[title].iter_rows(values_only=True))
        assert lines[0] == tuple(RESULT_HEADER)
        assert len(lines) - 1 <= 3
        ids += [line[0] for line in lines[1:]]
    assert ids == [r[ID] for r in rows if r["status"] == schema.OK]
    assert report.results_sheets == 3
    assert summary(tmp_path / "out.xlsx")["Results sheets"] == 3


def test_exactly_max_rows_needs_no_second_sheet(tmp_path: Path) -> None:
    report = merge(tmp_path, [[row(i) for i in range(3)]], max_rows_per_sheet=3)
    assert report.results_sheets == 1
    assert load_workbook(tmp_path / "out.xlsx").sheetnames[2:] == ["Results", "Failures"]


def test_max_rows_per_sheet_out_of_range_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_rows_per_sheet"):
        merge(tmp_path, [[row(0)]], max_rows_per_sheet=0)


def test_unfinished_run_is_said_on_summary(tmp_path: Path) -> None:
    merge(tmp_path, [[row(i) for i in range(3)]], expected_rows=10)
    assert banners(tmp_path / "out.xlsx") == [
        "Unfinished run: 3 of 10 rows have results; run `pipeline run` again to finish"
    ]


def test_finished_run_says_so_and_whether_rows_failed(tmp_path: Path) -> None:
    merge(tmp_path, [[row(i) for i in range(3)]], expected_rows=3)
    text = " ".join(str(v) for line in sheet_rows(tmp_path / "out.xlsx", "Summary") for v in line)
    assert "Unfinished" not in text
    assert banners(tmp_path / "out.xlsx") == [
        "Finished: every user has an outcome, and no request failed."
    ]
    merge(tmp_path, [[row(0), row(1, schema.FAILED)]], expected_rows=2)
    assert banners(tmp_path / "out.xlsx") == [
        "Finished, but 1 rows failed: `pipeline rerun-failed` retries them."
    ]


def test_summary_headline_outcomes_with_shares_then_facts_as_given(tmp_path: Path) -> None:
    facts = [("start", "2024-05-01 10:00:00"), ("duration", 12.5), ("workers", 20)]
    facts += [("adaptive", True), ("note", None), ("formula-like", "=2+2")]
    rows = [row(0), row(1, schema.NO_CARDS), row(2, schema.FAILED), row(3, schema.INVALID_STATE)]
    merge(tmp_path, [rows], facts=facts)

    lines = sheet_rows(tmp_path / "out.xlsx", "Summary")
    assert lines[0][0] == "CardGenius results: summary"
    at = [line[0] for line in lines].index("users")
    assert lines[at - 1][:3] == (None, "users", "share")
    outcomes = [line[:3] for line in lines[at : at + 5]]
    assert outcomes == [
        ("users", 4, 1.0),
        ("ok: a best card found", 1, 0.25),
        ("no_cards: the API offered no card", 1, 0.25),
        ("invalid: not sent (see Failures)", 1, 0.25),
        ("failed: see Failures", 1, 0.25),
    ]
    labels = [line[0] for line in lines]
    start = labels.index("start")
    assert [line[:2] for line in lines[start : start + 6]] == facts
    assert max(len(line) for line in lines) <= 4  # no column past D: no scrolling sideways
    ws = load_workbook(tmp_path / "out.xlsx")["Summary"]
    assert ws.cell(row=start + 6, column=2).data_type == "s"  # "=2+2" is text
    assert ws.cell(row=at + 1, column=3).number_format == "0.0%"


def test_sheets_are_usable_frozen_filtered_sized(tmp_path: Path) -> None:
    merge(tmp_path, [[row(0, top1_card_name="A rather long credit card name"), row(1, "failed")]])
    book = load_workbook(tmp_path / "out.xlsx")
    results, failures = book["Results"], book["Failures"]
    assert results.freeze_panes == failures.freeze_panes == "A2"
    assert results.auto_filter.ref == f"A1:{get_column_letter(len(RESULT_HEADER))}2"
    assert failures.auto_filter.ref == "A1:E2"
    name_column = get_column_letter(RESULT_HEADER.index("top1_card_name") + 1)
    assert results.column_dimensions[name_column].width >= len("A rather long credit card name")
    assert results.cell(row=1, column=1).font.bold


def test_no_shards_writes_headers_and_zero_counts(tmp_path: Path) -> None:
    report = write_workbook(
        tmp_path / "out.xlsx", [], id_column=ID, value_columns=VALUES, facts=[], expected_rows=5
    )
    assert report.total == 0
    assert sheet_rows(tmp_path / "out.xlsx", "Results") == [(ID, "status", *VALUES)]
    assert summary(tmp_path / "out.xlsx")["users"] == 0


def test_failed_write_leaves_old_workbook_and_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))  # openpyxl's sheet buffers
    out = tmp_path / "out"
    good = make_shard(tmp_path / "good.parquet", [row(i) for i in range(300)])
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    out.mkdir()
    (out / "results.xlsx").write_bytes(b"the previous workbook")

    with pytest.raises(RunStateError, match=r"corrupt\.parquet.*pipeline run"):
        write_workbook(
            out / "results.xlsx", [good, corrupt], id_column=ID, value_columns=VALUES, facts=[]
        )
    assert (out / "results.xlsx").read_bytes() == b"the previous workbook"
    assert [p.name for p in out.iterdir()] == ["results.xlsx"]
    assert list(system_tmp.iterdir()) == []


def test_shard_without_a_column_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "shard.parquet"
    pq.write_table(pa.table({ID: ["1"], "status": ["ok"]}), path)
    with pytest.raises(RunStateError, match="error"):
        write_workbook(tmp_path / "o.xlsx", [path], id_column=ID, value_columns=(), facts=[])


def test_read_outcome_counts(tmp_path: Path) -> None:
    a = make_shard(tmp_path / "a.parquet", [row(0), row(1, schema.FAILED), row(2)])
    b = make_shard(tmp_path / "b.parquet", [row(3, schema.INVALID_STATE)])
    assert read_outcome_counts([a, b]) == {"ok": 2, "no_cards": 0, "invalid": 1, "failed": 1}
    assert read_outcome_counts([]) == {"ok": 0, "no_cards": 0, "invalid": 0, "failed": 0}
    (tmp_path / "c.parquet").write_bytes(b"not parquet")
    with pytest.raises(RunStateError, match=r"c\.parquet"):
        read_outcome_counts([a, tmp_path / "c.parquet"])


def test_booleans_are_boolean_cells_and_other_types_text(tmp_path: Path) -> None:
    path = tmp_path / "shard.parquet"
    table = pq.read_table(make_shard(tmp_path / "base.parquet", [row(0), row(1), row(2)]))
    table = table.append_column("lifetime_free", pa.array([True, False, None]))
    table = table.append_column("checked_on", pa.array([date(2024, 5, 1), None, None]))
    pq.write_table(table, path)
    write_workbook(tmp_path / "out.xlsx", [path], id_column=ID, value_columns=VALUES, facts=[])
    ws = load_workbook(tmp_path / "out.xlsx")["Results"]
    header = [c.value for c in ws[1]]
    flags = [ws.cell(row=r, column=header.index("lifetime_free") + 1) for r in (2, 3, 4)]
    assert [(c.value, c.data_type) for c in flags[:2]] == [(True, "b"), (False, "b")]
    assert flags[2].value is None
    day = ws.cell(row=2, column=header.index("checked_on") + 1)
    assert (day.value, day.data_type) == ("2024-05-01", "s")


def test_empty_string_is_an_empty_cell(tmp_path: Path) -> None:
    assert results_cell(tmp_path, "top1_card_name", top1_card_name="").value is None


def test_many_batches_and_shards_keep_every_row_once_in_order(tmp_path: Path) -> None:
    """Shards longer than a read batch, rows held back for the width sample, and sheet breaks
    in the middle of a batch: every row still lands once, in order, numbered right."""
    states = [schema.OK] * 7 + [schema.FAILED, schema.NO_CARDS, schema.INVALID_STATE]
    rows = [row(i, states[i % len(states)]) for i in range(5_000)]
    report = merge(
        tmp_path, [rows[:4_500], rows[4_500:4_550], rows[4_550:]], max_rows_per_sheet=1_000
    )

    book = load_workbook(tmp_path / "out.xlsx", read_only=True)
    titles = [f"Results {n}" if n > 1 else "Results" for n in range(1, 5)]
    assert book.sheetnames == ["Summary", "Insights", *titles, "Failures"]
    ids: list[Any] = []
    for title in titles:
        lines = list(book[title].iter_rows(values_only=True))
        assert lines[0] == tuple(RESULT_HEADER)
        ids += [line[0] for line in lines[1:]]
    wanted = {schema.OK, schema.NO_CARDS}
    assert ids == [r[ID] for r in rows if r["status"] in wanted]
    failures = [line[0] for line in book["Failures"].iter_rows(min_row=2, values_only=True)]
    assert failures == [r[ID] for r in rows if r["status"] not in wanted]
    assert (report.results_rows, report.failures, report.results_sheets) == (4_000, 1_000, 4)


def test_rerun_failed_rewrite_shows_each_row_once_with_its_last_outcome(tmp_path: Path) -> None:
    """`rerun-failed` rewrites a finished shard in place (atomically); the merge after it shows
    the retried row once, with its new outcome, and nothing of the old one."""
    out = tmp_path / "out"
    layout = RunLayout(out)
    first = [row(0), row(1, schema.FAILED), row(2, schema.FAILED)]
    second = [row(3), row(4, schema.INVALID_STATE)]
    layout.results_dir.mkdir(parents=True)
    make_shard(layout.result_shard("shard-00000.parquet"), first)
    make_shard(layout.result_shard("shard-00001.parquet"), second)
    config = merge_config(tmp_path)
    merge_run(config, layout)
    assert [r[0] for r in sheet_rows(out / "results.xlsx", "Failures")[1:]] == [
        "00001",
        "00002",
        "00004",
    ]

    retried = [row(0), row(1, top1_card_name="Retried Card"), row(2, schema.FAILED, attempts=8)]
    table = pq.read_table(make_shard(tmp_path / "retried.parquet", retried))
    write_parquet_atomic(table, layout.result_shard("shard-00000.parquet"))
    report = merge_run(config, layout)

    assert isinstance(report, MergeReport)
    results = sheet_rows(out / "results.xlsx", "Results")[1:]
    failures = sheet_rows(out / "results.xlsx", "Failures")[1:]
    assert [r[0] for r in results] == ["00000", "00001", "00003"]
    assert results[1][RESULT_HEADER.index("top1_card_name")] == "Retried Card"
    assert [(r[0], r[3]) for r in failures] == [("00002", 8), ("00004", 0)]
    assert (report.ok, report.failed, report.invalid, report.total) == (3, 1, 1, 5)


def test_merge_run_reads_only_finished_result_shards(tmp_path: Path) -> None:
    """Leftovers of a killed run (a temporary file beside a result shard, a checkpoint of an
    unfinished shard, the input shards) are not results; the Summary says the run is short."""
    layout = RunLayout(tmp_path / "out")
    layout.results_dir.mkdir(parents=True)
    layout.partial_dir.mkdir(parents=True)
    layout.input_dir.mkdir(parents=True)
    make_shard(layout.result_shard("shard-00000.parquet"), [row(0), row(1)])
    make_shard(layout.results_dir / ".shard-00001.parquet.x1y2.tmp", [row(2), row(3)])
    make_shard(layout.input_shard("shard-00001.parquet"), [row(2), row(3)])
    layout.checkpoint("shard-00001.parquet").write_text('{"_row": 2}\n', encoding="utf-8")
    write_json_atomic(layout.run_file, {"format": 1, "input": {"rows": 4}})

    report = merge_run(merge_config(tmp_path), layout)
    assert isinstance(report, MergeReport)
    assert report.total == 2
    results = sheet_rows(layout.root / "results.xlsx", "Results")
    assert [r[0] for r in results[1:]] == ["00000", "00001"]
    assert banners(layout.root / "results.xlsx")[0].startswith("Unfinished run: 2")


def test_summary_holds_the_runs_facts_settings_and_sheet_count(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path / "out")
    layout.results_dir.mkdir(parents=True)
    make_shard(layout.result_shard("shard-00000.parquet"), [row(0)])
    info = {
        "format": 1,
        "fingerprint": {
            "input": {"path": "/data/users.csv"},
            "id_column": ID,
            "request": {"amazon_spends": [VALUES[0]], "other_online_spends": list(VALUES)},
            "endpoint": {"auth": "none", "mock": True},
            "top_n": 1,
            "limit": None,
        },
        "settings": {"processing": {"max_workers": 20}, "retry": {"max_attempts": 4}},
        "input": {"rows": 1},
        "started_at": "2024-05-01T10:00:00+00:00",
        "finished_at": "2024-05-01T10:00:10+00:00",
        "elapsed_seconds": 10.0,
        "last_invocation": [["requests sent", 1], ["retries", 0]],
    }
    write_json_atomic(layout.run_file, info)
    merge_run(merge_config(tmp_path), layout)

    book = load_workbook(layout.root / "results.xlsx")
    assert book.sheetnames[0] == "Summary"
    facts = summary(layout.root / "results.xlsx")
    assert facts["users"] == 1 and facts["Results sheets"] == 1
    assert facts["input"] == "/data/users.csv" and facts["input rows"] == 1
    assert facts["duration"] == "10.0 s" and facts["rate (users per second)"] == 0.1
    assert facts["started"] == "2024-05-01T10:00:00+00:00"
    assert facts["request.other_online_spends"] == " + ".join(VALUES)
    assert facts["processing.max_workers"] == 20 and facts["retry.max_attempts"] == 4
    assert facts["requests sent"] == 1
    assert facts["answers from"] == "the embedded mock API (simulated)"
    assert banners(layout.root / "results.xlsx") == [
        "Finished: every user has an outcome, and no request failed.",
        SIMULATED,
    ]
    labels = list(facts)
    # The headline first, then the tables, the settings last.
    assert labels.index("users") < labels.index("requests sent") < labels.index("input")
    assert labels.index("input") < labels.index("processing.max_workers")


def merge_config(tmp_path: Path) -> Config:
    """A config whose request reads VALUES and whose output folder is tmp_path/out."""
    raw = {
        "input": {"path": "users.csv", "id_column": ID},
        "request": {"amazon_spends": VALUES[0], "flipkart_spends": VALUES[1]},
        "output": {"dir": "out"},
    }
    return build_config(raw, source=tmp_path / "config.toml")


def test_zip_parts_are_plain_deflate_like_openpyxls(tmp_path: Path) -> None:
    """No zip64 fields and no data descriptors below 2 GiB a part, as openpyxl and xlsxwriter
    write them: Excel asks to repair files whose zip64 fields it does not expect."""
    merge(tmp_path, [[row(i) for i in range(10)], [row(10, schema.FAILED)]])
    with zipfile.ZipFile(tmp_path / "out.xlsx") as book:
        infos = book.infolist()
        assert book.testzip() is None
    names = {info.filename for info in infos}
    assert {"[Content_Types].xml", "xl/workbook.xml", "xl/styles.xml"} <= names
    assert {f"xl/worksheets/sheet{n}.xml" for n in (1, 2, 3)} <= names
    for info in infos:
        assert info.compress_type == zipfile.ZIP_DEFLATED
        assert (info.extract_version, info.flag_bits & 0x08, info.extra) == (20, 0, b"")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no spools


def test_a_shard_from_before_answered_at_and_reused_merges_with_empty_cells(
    tmp_path: Path,
) -> None:
    """A run resumed across the upgrade: its first shards lack the two columns."""
    new = make_shard(tmp_path / "shard-00000.parquet", [row(0, answered_at="2026-01-01T00:00:00Z")])
    old = pq.read_table(make_shard(tmp_path / "shard-00001.parquet", [row(1)]))
    pq.write_table(old.drop_columns(["answered_at", "reused"]), tmp_path / "shard-00001.parquet")
    paths = [new, tmp_path / "shard-00001.parquet"]
    write_workbook(tmp_path / "out.xlsx", paths, id_column=ID, value_columns=VALUES)
    rows = sheet_rows(tmp_path / "out.xlsx", "Results")
    at = rows[0].index("answered_at")
    assert [r[at] for r in rows[1:]] == ["2026-01-01T00:00:00Z", None]
