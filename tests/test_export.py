"""Tests of pipeline.merge.export: every row to Parquet or CSV, read back with pyarrow and csv."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_merge import DERIVED, ID, VALUES, make_shard, merge_config, row

from pipeline import schema
from pipeline.cli import main
from pipeline.errors import RunStateError
from pipeline.merge import ExportReport, export_csv, export_parquet
from pipeline.merge.export import neutralise
from pipeline.merge.run import merge_run
from pipeline.state.store import RunLayout, write_json_atomic

EXPORT_HEADER = [ID, "status", "http_status", "attempts", "error", *VALUES]
EXPORT_HEADER += ["answered_at", "reused", *(name for name, _ in DERIVED)]
STATES = [schema.OK, schema.FAILED, schema.NO_CARDS, schema.INVALID_STATE]
DANGEROUS = ["=1+1", '=HYPERLINK("http://x","y")', "+91 98765", "-5", "@SUM(A1)", "\tx", "\rx"]
HARMLESS = ["Card 1", "a=b", "#N/A", " =pad", "₹ बचत 💳", "", "multi\nline", 'q"uote']


def shards(tmp_path: Path, rows: list[dict[str, Any]], size: int = 4) -> list[Path]:
    chunks = [rows[i : i + size] for i in range(0, len(rows), size)]
    return [make_shard(tmp_path / f"s{n:05d}.parquet", c) for n, c in enumerate(chunks)]


def read_csv(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # so that Excel reads UTF-8
    return list(csv.reader(io.StringIO(raw[3:].decode("utf-8"), newline="")))


def test_parquet_holds_every_row_of_every_state_in_input_order(tmp_path: Path) -> None:
    rows = [row(i, STATES[i % 4]) for i in range(30)]
    paths = shards(tmp_path, rows, size=7)
    report = export_parquet(tmp_path / "r.parquet", paths, id_column=ID, value_columns=VALUES)

    table = pq.read_table(tmp_path / "r.parquet")
    assert table.column_names == EXPORT_HEADER
    assert table.to_pylist() == [{k: r.get(k) for k in EXPORT_HEADER} for r in rows]
    assert table.schema.field("attempts").type == pa.int32()
    assert table.schema.field(VALUES[0]).type == pa.float64()
    assert (report.rows, report.cells_neutralised) == (30, 0)
    assert report.counts == {"ok": 8, "no_cards": 7, "invalid": 7, "failed": 8}


def test_parquet_keeps_strings_untouched(tmp_path: Path) -> None:
    rows = [row(i, top1_card_name=t) for i, t in enumerate(DANGEROUS + HARMLESS)]
    export_parquet(
        tmp_path / "r.parquet", shards(tmp_path, rows), id_column=ID, value_columns=VALUES
    )
    names = pq.read_table(tmp_path / "r.parquet").column("top1_card_name").to_pylist()
    assert names == DANGEROUS + HARMLESS


def test_parquet_row_groups_are_large_and_memory_flat(tmp_path: Path) -> None:
    rows = [row(i) for i in range(3_000)]
    paths = shards(tmp_path, rows, size=100)
    export_parquet(tmp_path / "r.parquet", paths, id_column=ID, value_columns=VALUES)
    meta = pq.ParquetFile(tmp_path / "r.parquet").metadata
    assert meta.num_rows == 3_000 and meta.num_row_groups == 1  # not one per 100-row shard


def test_csv_holds_every_row_in_order_numbers_as_numbers(tmp_path: Path) -> None:
    rows = [row(i, STATES[i % 4]) for i in range(12)]
    rows[0][VALUES[1]] = -12.5
    rows[1]["top1_net_savings"] = float("nan")
    report = export_csv(
        tmp_path / "r.csv", shards(tmp_path, rows), id_column=ID, value_columns=VALUES
    )

    lines = read_csv(tmp_path / "r.csv")
    assert lines[0] == EXPORT_HEADER
    assert [line[0] for line in lines[1:]] == [r[ID] for r in rows]  # "00001": zeros kept
    first = dict(zip(EXPORT_HEADER, lines[1], strict=True))
    assert first[VALUES[1]] == "-12.5"  # a number, not neutralised
    assert first["http_status"] == "200" and first["error"] == ""
    assert dict(zip(EXPORT_HEADER, lines[2], strict=True))["top1_net_savings"] == ""  # NaN
    assert (report.rows, report.cells_neutralised) == (12, 0)


def test_csv_neutralises_every_dangerous_string(tmp_path: Path) -> None:
    texts = DANGEROUS + HARMLESS
    rows = [row(i, top1_card_name=t) for i, t in enumerate(texts)]
    rows.append(row(99, schema.FAILED, user_id="=cmd|' /C calc'!A0", error="-1 attempts"))
    report = export_csv(
        tmp_path / "r.csv", shards(tmp_path, rows), id_column=ID, value_columns=VALUES
    )

    lines = read_csv(tmp_path / "r.csv")
    column = EXPORT_HEADER.index("top1_card_name")
    assert [line[column] for line in lines[1 : len(texts) + 1]] == [
        *("'" + t for t in DANGEROUS),
        *HARMLESS,
    ]
    assert lines[-1][0] == "'=cmd|' /C calc'!A0"
    assert lines[-1][EXPORT_HEADER.index("error")] == "'-1 attempts"
    assert report.cells_neutralised == len(DANGEROUS) + 2
    raw = (tmp_path / "r.csv").read_text(encoding="utf-8-sig")
    assert '"\'=1+1"' in raw  # strings are quoted, so the quote is inside the field


def test_neutralise_counts_and_leaves_null_alone() -> None:
    values, count = neutralise(pa.array(["=a", None, "b", "@c", "-"]))
    assert values.to_pylist() == ["'=a", None, "b", "'@c", "'-"]
    assert count == 3
    same, none = neutralise(pa.array(["plain", "a-b"]))
    assert (same.to_pylist(), none) == (["plain", "a-b"], 0)


def test_exports_of_no_shards_have_the_header_only(tmp_path: Path) -> None:
    export_parquet(tmp_path / "r.parquet", [], id_column=ID, value_columns=VALUES)
    export_csv(tmp_path / "r.csv", [], id_column=ID, value_columns=VALUES)
    assert pq.read_table(tmp_path / "r.parquet").column_names == EXPORT_HEADER[:5] + list(VALUES)
    assert read_csv(tmp_path / "r.csv") == [EXPORT_HEADER[:5] + list(VALUES)]


@pytest.mark.parametrize("export", [export_parquet, export_csv])
def test_failed_export_leaves_the_old_file(tmp_path: Path, export: Any) -> None:
    good = make_shard(tmp_path / "good.parquet", [row(0)])
    corrupt = tmp_path / "corrupt.parquet"
    corrupt.write_bytes(b"PAR1 not parquet")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.x").write_bytes(b"old")
    with pytest.raises(RunStateError, match=r"corrupt\.parquet"):
        export(out / "results.x", [good, corrupt], id_column=ID, value_columns=VALUES)
    assert [p.name for p in out.iterdir()] == ["results.x"]
    assert (out / "results.x").read_bytes() == b"old"


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_merge_format_writes_beside_the_workbook(
    tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = RunLayout(tmp_path / "out")
    layout.results_dir.mkdir(parents=True)
    make_shard(layout.result_shard("shard-00000.parquet"), [row(0), row(1, schema.FAILED)])
    make_shard(layout.result_shard("shard-00001.parquet"), [row(2)])
    write_json_atomic(layout.run_file, {"format": 1, "input": {"rows": 3}})
    merge_config(tmp_path)  # checks the config the CLI reads below is valid
    config = tmp_path / "config.toml"
    config.write_text(
        f'[input]\npath = "users.csv"\nid_column = "{ID}"\n'
        f'[request]\namazon_spends = "{VALUES[0]}"\nflipkart_spends = "{VALUES[1]}"\n'
        '[output]\ndir = "out"\n',
        encoding="utf-8",
    )
    assert main(["merge", "--config", str(config), "--format", fmt]) == 0
    dest = layout.root / f"results.{fmt}"
    assert f"Wrote {dest}: 3 rows" in capsys.readouterr().out
    assert not (layout.root / "results.xlsx").exists()
    report = merge_run(merge_config(tmp_path), layout, fmt)
    assert isinstance(report, ExportReport) and report.path == dest and report.rows == 3


def test_merge_run_refuses_an_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="xlsx, parquet, csv"):
        merge_run(merge_config(tmp_path), RunLayout(tmp_path / "out"), "xls")
