"""Tests for pipeline/shard.py: real CSV, Parquet and xlsx files in a temp folder."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from openpyxl import Workbook

from pipeline.errors import InputError
from pipeline.inputs import readers, shard
from pipeline.inputs.shard import count_rows, input_columns, shard_input
from pipeline.schema import INVALID, ROW, input_schema
from pipeline.state.store import RunLayout

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SCRIPT = ROOT / "scripts" / "make_sample_data.py"
VALUES = ["avg_a", "avg_b"]


def _load_sample_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_sample_data", SAMPLE_SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sample = _load_sample_script()


def run(
    source: Path,
    out: Path,
    *,
    value_columns: list[str] = VALUES,
    shard_size: int = 10,
    sheet: str | None = None,
    limit: int | None = None,
) -> tuple[shard.ShardingReport, pa.Table]:
    """Shard `source` into `out`; return the report and all shards read back, in order."""
    layout = RunLayout(out)
    report = shard_input(
        source,
        layout=layout,
        id_column="user_id",
        value_columns=value_columns,
        shard_size=shard_size,
        sheet=sheet,
        limit=limit,
    )
    assert layout.input_shards() == report.shards
    schema = input_schema("user_id", value_columns)
    tables = [pq.read_table(layout.input_shard(name)) for name in report.shards]
    assert all(table.schema.equals(schema) for table in tables)
    return report, pa.concat_tables(tables) if tables else schema.empty_table()


def write_csv(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return path


def write_xlsx(path: Path, rows: list[list[object]], *, sheets: tuple[str, ...] = ()) -> Path:
    workbook = Workbook()
    for name in sheets:
        workbook.create_sheet(name)
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


def column(table: pa.Table, name: str) -> list[Any]:
    values: list[Any] = table.column(name).to_pylist()
    return values


# --- the same data in three formats


NUMERIC_ROWS: list[list[object]] = [
    ["user_id", "avg_a", "avg_b"],
    ["007", 1200, 0.5],
    ["A-2", None, 99.25],
    ["A-3", -5, 10],
    ["A-2", 3, 4],
]


def test_three_formats_give_identical_shards(tmp_path: Path) -> None:
    csv = write_csv(
        tmp_path / "u.csv", "user_id,avg_a,avg_b\n007,1200,0.5\nA-2,,99.25\nA-3,-5,10\nA-2,3,4\n"
    )
    parquet = tmp_path / "u.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": ["007", "A-2", "A-3", "A-2"],
                "avg_a": pa.array([1200, None, -5, 3], pa.int64()),
                "avg_b": [0.5, 99.25, 10.0, 4.0],
            }
        ),
        parquet,
    )
    xlsx = write_xlsx(tmp_path / "u.xlsx", NUMERIC_ROWS)
    results = [run(src, tmp_path / src.suffix) for src in (csv, parquet, xlsx)]
    assert results[0][1].equals(results[1][1])
    assert results[0][1].equals(results[2][1])
    report, table = results[0]
    assert (report.rows, report.invalid) == (4, 2)
    assert column(table, "avg_a") == [1200.0, 0.0, None, 3.0]
    assert column(table, INVALID) == [
        None,
        None,
        "row 4: avg_a: -5 is negative",
        "row 5: duplicate user_id (first at row 3)",
    ]


@pytest.mark.parametrize("kind", ["parquet", "xlsx"])
def test_sample_data_shards_the_same_in_every_format(tmp_path: Path, kind: str) -> None:
    columns = list(sample.PROFILES)
    tables = []
    for suffix in ("csv", kind):
        path = tmp_path / f"users.{suffix}"
        sample.main(["--rows", "1500", "--out", str(path), "--seed", "7"])
        tables.append(run(path, tmp_path / suffix, value_columns=columns, shard_size=500)[1])
    assert tables[0].equals(tables[1])


# --- shards, limit, header


def numbered_csv(path: Path, rows: int) -> Path:
    lines = ["user_id,avg_a,avg_b"] + [f"U{i:03d},{i},{i * 2}" for i in range(rows)]
    return write_csv(path, "\n".join(lines) + "\n")


def test_shard_sizes_and_names_across_small_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "_CSV_BLOCK_BYTES", 64)  # a few rows per batch
    report, table = run(numbered_csv(tmp_path / "u.csv", 25), tmp_path / "out", shard_size=10)
    assert report.shards == ["shard-00000.parquet", "shard-00001.parquet", "shard-00002.parquet"]
    layout = RunLayout(tmp_path / "out")
    sizes = [pq.read_metadata(layout.input_shard(n)).num_rows for n in report.shards]
    assert sizes == [10, 10, 5]
    assert column(table, ROW) == list(range(25))
    assert column(table, "user_id")[:2] == ["U000", "U001"]
    assert (report.rows, report.invalid) == (25, 0)


def test_exact_multiple_of_shard_size_and_stale_shards_removed(tmp_path: Path) -> None:
    source = numbered_csv(tmp_path / "u.csv", 20)
    run(source, tmp_path / "out", shard_size=4)  # 5 shards
    report, _ = run(source, tmp_path / "out", shard_size=10)
    assert report.shards == ["shard-00000.parquet", "shard-00001.parquet"]


@pytest.mark.parametrize(
    ("limit", "rows", "shards"), [(7, 7, 1), (13, 13, 2), (99, 25, 3), (0, 0, 0)]
)
def test_limit_keeps_the_first_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int, rows: int, shards: int
) -> None:
    monkeypatch.setattr(readers, "_CSV_BLOCK_BYTES", 64)
    report, table = run(numbered_csv(tmp_path / "u.csv", 25), tmp_path / "out", limit=limit)
    assert (report.rows, len(report.shards)) == (rows, shards)
    assert column(table, ROW) == list(range(rows))


def test_header_spaces_and_bom(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "u.csv", " user_id , avg_a ,avg_b  \nX,1,2\n", bom=True)
    assert input_columns(source) == ["user_id", "avg_a", "avg_b"]
    _, table = run(source, tmp_path / "out")
    assert column(table, "user_id") == ["X"]
    assert column(table, "avg_a") == [1.0]


def test_xlsx_header_spaces_and_named_sheet(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.active.append(["something else"])
    users = workbook.create_sheet("Users")
    users.append([" user_id", "avg_b ", "avg_a"])
    users.append(["X", 2, 1])
    workbook.save(tmp_path / "u.xlsx")
    _, table = run(tmp_path / "u.xlsx", tmp_path / "out", sheet="Users")
    assert column(table, "avg_a") == [1.0]
    assert column(table, "avg_b") == [2.0]


def test_xlsx_with_a_wrong_recorded_size_is_read_whole(tmp_path: Path) -> None:
    # Some programs record a wrong sheet size (A1:A1, or 65,536 rows), which openpyxl's
    # read-only mode would trust and cut the rows and columns to.
    rows: list[list[object]] = [["user_id", "avg_a", "avg_b"]] + [[f"U{i}", i, i] for i in range(5)]
    good = write_xlsx(tmp_path / "good.xlsx", rows)
    bad = tmp_path / "bad.xlsx"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = re.sub(rb'<dimension ref="[^"]*"', b'<dimension ref="A1:A2"', data)
            zout.writestr(item, data)
    report, table = run(bad, tmp_path / "out")
    assert report.rows == 5
    assert column(table, "avg_b") == [0.0, 1.0, 2.0, 3.0, 4.0]


# --- values


def test_currency_commas_and_spaces_are_cleaned(tmp_path: Path) -> None:
    cells = [
        "₹1,200",
        "Rs. 5",
        "rs5",
        "1,250.50",
        " 7 ",
        "1\u00a0200",
        "INR 9",
        "9 inr",
        "$3",
        "500/-",
        "Rs 1,00,000",
        "-₹0",
    ]
    lines = ["user_id,avg_a,avg_b"] + [f'U{i},"{cell}",1' for i, cell in enumerate(cells)]
    report, table = run(write_csv(tmp_path / "u.csv", "\n".join(lines)), tmp_path / "out")
    assert column(table, "avg_a") == [
        1200.0,
        5.0,
        5.0,
        1250.5,
        7.0,
        1200.0,
        9.0,
        9.0,
        3.0,
        500.0,
        100000.0,
        0.0,
    ]
    assert report.invalid == 0


def test_empty_counts_as_zero(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "u.csv", 'user_id,avg_a,avg_b\nA,,\nB," ",0\n')
    report, table = run(source, tmp_path / "out")
    assert column(table, "avg_a") == [0.0, 0.0]
    assert column(table, "avg_b") == [0.0, 0.0]
    assert report.invalid == 0


def test_invalid_rows_say_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readers, "_CSV_BLOCK_BYTES", 64)  # the repeat is in a later batch
    text = (
        "user_id,avg_a,avg_b\n"
        "A,abc,1\n"  # row 2: the header is row 1, as in a spreadsheet
        "B,2,-5\n"
        ",3,4\n"
        "C,1,5\n"
        "D,1,1\n"
        "E,1,1\n"
        "F,1,1\n"
        "C,7,8\n"  # row 9: repeats row 5
        "  ,n/a,-1\n"
        'G,"1,5",inf\n'
    )
    report, table = run(write_csv(tmp_path / "u.csv", text), tmp_path / "out")
    assert column(table, INVALID) == [
        "row 2: avg_a: 'abc' is not a number",
        "row 3: avg_b: -5 is negative",
        "row 4: missing user_id",
        None,
        None,
        None,
        None,
        "row 9: duplicate user_id (first at row 5)",
        "row 10: missing user_id; avg_a: 'n/a' is not a number; avg_b: -1 is negative",
        "row 11: avg_a: '1,5' is not a number; avg_b: 'inf' is not a number",
    ]
    assert (report.rows, report.invalid) == (10, 6)
    assert column(table, "avg_a")[:3] == [None, 2.0, 3.0]  # only the bad value is null
    assert column(table, "avg_b")[:3] == [1.0, None, 4.0]
    assert column(table, "avg_a")[7] == 7.0  # a repeated row keeps its values


def test_parquet_numbers_of_any_type(tmp_path: Path) -> None:
    source = tmp_path / "u.parquet"
    data = {
        "user_id": pa.array([1234.0, 5.0, None, 77.5]),
        "avg_a": pa.array([1, 2, 3, -4], pa.int32()),
        "avg_b": pa.array([1.5, float("nan"), None, float("inf")]),
    }
    pq.write_table(pa.table(data), source)
    report, table = run(source, tmp_path / "out")
    assert column(table, "user_id") == ["1234", "5", None, "77.5"]
    # NaN is not a number (as the text "NaN" is not), not an empty cell sent as 0.
    assert column(table, "avg_b") == [1.5, None, 0.0, None]
    assert column(table, INVALID)[1] == "row 3: avg_b: 'NaN' is not a number"
    assert column(table, INVALID)[3] == (
        "row 5: avg_a: -4 is negative; avg_b: 'inf' is not a number"
    )
    assert report.invalid == 3


def test_ids_keep_leading_zeros_and_whole_numbers_lose_dot_zero(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "u.csv", "user_id,avg_a,avg_b\n 007 ,1,1\n1234.0,1,1\n")
    assert column(run(csv, tmp_path / "c")[1], "user_id") == ["007", "1234.0"]  # CSV is text
    xlsx = write_xlsx(
        tmp_path / "u.xlsx",
        [["user_id", "avg_a", "avg_b"], ["007", 1, 1], [1234, 1, 1], [5678.0, 1, 1], [9.5, 1, 1]],
    )
    assert column(run(xlsx, tmp_path / "x")[1], "user_id") == ["007", "1234", "5678", "9.5"]
    parquet = tmp_path / "u.parquet"
    pq.write_table(pa.table({"user_id": [10, 20], "avg_a": [1, 1], "avg_b": [1, 1]}), parquet)
    assert column(run(parquet, tmp_path / "p")[1], "user_id") == ["10", "20"]


# --- bad input


def test_missing_column_names_the_file_and_lists_the_columns(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "users.csv", "user_id,avg_a\nA,1\n")
    with pytest.raises(InputError) as caught:
        run(source, tmp_path / "out")
    assert str(caught.value) == f"{source}: column 'avg_b' not found (columns: user_id, avg_a)"


def corrupt_parquet(path: Path) -> Path:
    pq.write_table(pa.table({"user_id": ["A"], "avg_a": [1], "avg_b": [1]}), path)
    path.write_bytes(path.read_bytes()[:-20])
    return path


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("missing.csv", None, "file not found"),
        ("users.xls", lambda p: p.write_bytes(b"x"), ".csv, .parquet or .xlsx"),
        ("empty.csv", lambda p: p.write_bytes(b""), "empty"),
        ("blank.csv", lambda p: p.write_bytes(b"\n\n"), "empty"),
        ("empty.xlsx", lambda p: Workbook().save(p), "empty"),
        ("corrupt.parquet", corrupt_parquet, "cannot read as Parquet"),
        (
            "corrupt.xlsx",
            lambda p: p.write_bytes(b"PK\x03\x04 not really"),
            "cannot read as an .xlsx",
        ),
        ("latin1.csv", lambda p: p.write_bytes(b"user_id,avg_a,avg_b\nA,\xa31,1\n"), "UTF-8"),
        (
            "ragged.csv",
            lambda p: p.write_bytes(b"user_id,avg_a,avg_b\nA,1\n"),
            "cannot read as CSV",
        ),
    ],
)
def test_bad_files_are_input_errors_naming_the_file(
    tmp_path: Path, name: str, make: object, expected: str
) -> None:
    path = tmp_path / name
    if callable(make):
        make(path)
    with pytest.raises(InputError) as caught:
        run(path, tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_unknown_sheet_lists_the_sheets(tmp_path: Path) -> None:
    source = write_xlsx(tmp_path / "u.xlsx", NUMERIC_ROWS, sheets=("Other",))
    with pytest.raises(InputError, match=r"sheet 'Users' not found \(sheets: Sheet, Other\)"):
        run(source, tmp_path / "out", sheet="Users")


def test_zero_data_rows(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "u.csv", "user_id,avg_a,avg_b\n")
    report, _ = run(source, tmp_path / "out")
    assert (report.rows, report.invalid, report.shards) == (0, 0, [])
    assert count_rows(source) == 0


# --- count_rows


def test_count_rows_and_columns_in_every_format(tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "u.csv", "user_id,avg_a,avg_b\nA,1,1\n\nB,2,2\nC,3,3\n")
    parquet = tmp_path / "u.parquet"
    pq.write_table(
        pa.table({"user_id": ["A", "B", "C"], "avg_a": [1, 2, 3], "avg_b": [1, 2, 3]}),
        parquet,
        row_group_size=2,
    )
    xlsx = write_xlsx(
        tmp_path / "u.xlsx", [["user_id", "avg_a", "avg_b"], ["A", 1], [None], ["B", 2, 2], ["C"]]
    )
    for source in (csv, parquet, xlsx):
        assert count_rows(source) == 3, source
        assert input_columns(source) == ["user_id", "avg_a", "avg_b"]
        assert run(source, tmp_path / source.suffix)[0].rows == 3


# --- the sample data generator


def test_sample_generator_is_deterministic_and_its_output_shards(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    sample.main(["--rows", "3000", "--out", str(first), "--seed", "5"])
    sample.main(["--rows", "3000", "--out", str(second), "--seed", "5"])
    sample.main(["--rows", "3000", "--out", str(other), "--seed", "6"])
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    report, table = run(
        first, tmp_path / "out", value_columns=list(sample.PROFILES), shard_size=1000
    )
    assert report.rows == 3000
    assert report.invalid == sample.expected_invalid(3000) == 3
    reasons = [r for r in column(table, INVALID) if r]
    assert any(re.match(r"row \d+: duplicate user_id \(first at row \d+\)", r) for r in reasons)
    assert column(table, "user_id")[0] == "CG0000001"
    zeros = sum(v == 0 for v in column(table, "avg_ajio_gmv"))
    assert 0.3 < zeros / 3000 < 0.7


def test_committed_sample_is_the_generator_output(tmp_path: Path) -> None:
    out = tmp_path / "sample.csv"
    result = subprocess.run(
        [sys.executable, str(SAMPLE_SCRIPT), "--rows", "5000", "--out", str(out), "--seed", "42"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith(f"5000 rows -> {out} in ")
    assert out.read_bytes() == (ROOT / "data" / "sample_users.csv").read_bytes()
    report, _ = run(out, tmp_path / "out", value_columns=list(sample.PROFILES), shard_size=1000)
    assert (report.rows, report.invalid, len(report.shards)) == (5000, 3, 5)


def test_clean_sample_has_no_invalid_rows(tmp_path: Path) -> None:
    path = tmp_path / "clean.parquet"
    sample.main(["--rows", "2000", "--out", str(path), "--clean"])
    assert pq.read_schema(path).field("avg_amazon_gmv").type == pa.float64()
    report, _ = run(path, tmp_path / "out", value_columns=list(sample.PROFILES), shard_size=1000)
    assert (report.rows, report.invalid) == (2000, 0)


# --- what a spreadsheet user sees: row numbers, blank rows, formulas, hidden sheets


def test_blank_rows_are_skipped_and_rows_keep_their_spreadsheet_numbers(tmp_path: Path) -> None:
    """An empty line, a row of commas and a row of spaces are skipped in CSV as in xlsx; the
    rows after them are still named by the row a spreadsheet shows them on."""
    text = "user_id,avg_a,avg_b\nA,1,1\n\n,,\n  , ,\nB,x,1\nA,2,2\n"
    report, table = run(write_csv(tmp_path / "u.csv", text), tmp_path / "c")
    assert column(table, "user_id") == ["A", "B", "A"]
    assert column(table, INVALID) == [
        None,
        "row 6: avg_a: 'x' is not a number",
        "row 7: duplicate user_id (first at row 2)",
    ]
    assert report.rows == 3
    rows: list[list[object]] = [["user_id", "avg_a", "avg_b"], ["A", 1, 1], [None], [None]]
    rows += [["B", "x", 1], ["A", 2, 2]]
    _, sheet = run(write_xlsx(tmp_path / "u.xlsx", rows), tmp_path / "x")
    assert column(sheet, INVALID) == [
        None,
        "row 5: avg_a: 'x' is not a number",
        "row 6: duplicate user_id (first at row 2)",
    ]


def test_parquet_rows_of_nothing_are_skipped_but_nan_beside_a_value_is_invalid(
    tmp_path: Path,
) -> None:
    source = tmp_path / "u.parquet"
    nan = float("nan")
    data = {"user_id": ["A", None, "C"], "avg_a": [nan, nan, 1.0], "avg_b": [1.0, nan, 1e13]}
    pq.write_table(pa.table(data), source)
    report, table = run(source, tmp_path / "out")
    assert column(table, "user_id") == ["A", "C"]  # the row of nulls and NaNs is blank
    assert column(table, INVALID) == [
        "row 2: avg_a: 'NaN' is not a number",
        "row 4: avg_b: 10000000000000.0 is more than 1,000,000,000,000",
    ]
    assert report.invalid == 2


def test_absurd_amounts_are_invalid_not_sent(tmp_path: Path) -> None:
    text = "user_id,avg_a,avg_b\nA,1000000000000,1\nB,1000000000001,1\nC,1e300,1\n"
    _, table = run(write_csv(tmp_path / "u.csv", text), tmp_path / "out")
    assert column(table, INVALID) == [
        None,  # a lakh crore rupees is the most a value may be
        "row 3: avg_a: 1000000000001 is more than 1,000,000,000,000",
        "row 4: avg_a: 1e300 is more than 1,000,000,000,000",
    ]
    assert column(table, "avg_a") == [1e12, None, None]


def test_xlsx_formula_without_a_saved_value_makes_the_row_invalid(tmp_path: Path) -> None:
    """openpyxl and pandas write formulas without their value; read as 0, "=100+200" would
    be sent as no spend at all."""
    rows: list[list[object]] = [["user_id", "avg_a", "avg_b"], ["A", "=100+200", 5]]
    rows += [["B", 7, 5], ['=CONCAT("C",1)', 1, 1]]
    _, table = run(write_xlsx(tmp_path / "u.xlsx", rows), tmp_path / "out")
    saved = "a formula without a saved value (open the file in Excel and save it)"
    assert column(table, INVALID) == [
        f"row 2: avg_a: {saved}",
        None,
        f"row 4: user_id: {saved}",
    ]
    assert column(table, "avg_a") == [None, 7.0, 1.0]


def test_xlsx_text_that_starts_with_equals_is_text(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.active.append(["user_id", "avg_a", "avg_b"])
    workbook.active.append(["A", 1, 1])
    workbook.active["A2"].data_type = "s"
    workbook.active["A2"].value = "=A"
    workbook.active["A2"].data_type = "s"
    workbook.save(tmp_path / "u.xlsx")
    _, table = run(tmp_path / "u.xlsx", tmp_path / "out")
    assert column(table, INVALID) == [None]


@pytest.mark.parametrize("state", ["hidden", "veryHidden"])
def test_xlsx_reads_the_first_visible_sheet(tmp_path: Path, state: str) -> None:
    workbook = Workbook()
    hidden = workbook.active
    hidden.title = "Old"
    hidden.append(["user_id", "avg_a", "avg_b"])
    hidden.append(["STALE", 1, 1])
    hidden.sheet_state = state
    users = workbook.create_sheet("Users")
    users.append(["user_id", "avg_a", "avg_b"])
    users.append(["A", 2, 3])
    workbook.save(tmp_path / "u.xlsx")
    _, table = run(tmp_path / "u.xlsx", tmp_path / "out")
    assert column(table, "user_id") == ["A"]
    assert input_columns(tmp_path / "u.xlsx") == ["user_id", "avg_a", "avg_b"]


def test_xlsx_messages_name_the_sheet(tmp_path: Path) -> None:
    workbook = Workbook()
    workbook.active.title = "Users"
    workbook.active.append(["user_id", "avg_a"])
    workbook.create_sheet("Empty")
    workbook.save(tmp_path / "u.xlsx")
    with pytest.raises(InputError, match=r"u.xlsx: sheet 'Users': column 'avg_b' not found"):
        run(tmp_path / "u.xlsx", tmp_path / "a")
    with pytest.raises(InputError, match=r"u.xlsx: sheet 'Empty' is empty \(no header row\)"):
        run(tmp_path / "u.xlsx", tmp_path / "b", sheet="Empty")


def _rewrite_sheet(path: Path, change: Any) -> None:
    """Replace the first sheet's XML of the workbook at `path` by change(xml)."""
    with zipfile.ZipFile(path) as archive:
        parts = {info.filename: archive.read(info) for info in archive.infolist()}
    name = "xl/worksheets/sheet1.xml"
    parts[name] = change(parts[name])
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for part, data in parts.items():
            archive.writestr(part, data)


def test_xml_bomb_is_refused(tmp_path: Path) -> None:
    """Entities are how a "billion laughs" is built; defusedxml refuses any, at once."""
    source = write_xlsx(tmp_path / "u.xlsx", NUMERIC_ROWS)
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        + b"".join(
            b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
            for i in range(1, 10)
        )
        + b"]>"
    )

    def bomb(xml: bytes) -> bytes:
        body = xml.split(b"?>", 1)[-1]
        return laughs + body.replace(b"<v>1200</v>", b"<v>&lol9;</v>")

    _rewrite_sheet(source, bomb)
    with pytest.raises(InputError, match=r"refused: the workbook's XML declares entities"):
        run(source, tmp_path / "out")


def test_zip_bomb_is_refused_before_it_is_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.inputs import xlsx

    monkeypatch.setattr(xlsx, "RATIO_FLOOR_BYTES", 1 << 20)  # a small bomb, for a quick test
    source = write_xlsx(tmp_path / "u.xlsx", NUMERIC_ROWS)
    _rewrite_sheet(
        source, lambda xml: xml.replace(b"<sheetData>", b"<sheetData>" + b" " * (8 << 20))
    )
    with pytest.raises(InputError) as caught:
        run(source, tmp_path / "out")
    assert "refused: xl/worksheets/sheet1.xml would unpack to 8 MB (a zip bomb?)" in str(
        caught.value
    )


def test_a_wanted_column_twice_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "u.parquet"
    table = pa.Table.from_arrays(
        [pa.array(["A"]), pa.array([1.0]), pa.array([2.0]), pa.array([3.0])],
        names=["user_id", "avg_a", "avg_b", "avg_a"],
    )
    pq.write_table(table, source)
    with pytest.raises(InputError) as caught:
        run(source, tmp_path / "p")
    assert str(caught.value) == (
        f"{source}: column 'avg_a' appears twice (columns 2 and 4); rename or remove one"
    )
    csv = write_csv(tmp_path / "u.csv", "user_id,avg_a,avg_b,avg_b \nA,1,2,3\n")
    with pytest.raises(InputError, match="column 'avg_b' appears twice"):
        run(csv, tmp_path / "c")
    unused = write_csv(tmp_path / "v.csv", "user_id,avg_a,avg_b,note,note\nA,1,2,x,y\n")
    assert column(run(unused, tmp_path / "v")[1], "avg_b") == [2.0]  # not a wanted one


def test_a_header_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    source = tmp_path / "u.csv"
    source.write_bytes("user_id,avg_a,avg_b,d\xe9penses\nA,1,1,1\n".encode("latin-1"))
    with pytest.raises(InputError) as caught:
        run(source, tmp_path / "out")
    assert str(caught.value) == f"{source}: the file is not UTF-8 text; save it as 'CSV UTF-8'"
