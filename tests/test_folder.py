"""state/folder.py through the CLI: a command refused with exit 2 leaves the output folder as
it found it (no run.json, no shards, no lock, no log), and an unusable folder is one line."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import make_users, write_config, write_csv

from pipeline.cli import main
from pipeline.inputs import readers


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `argv`; it must exit 2 with one line and no traceback. The line."""
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_a_missing_column_leaves_no_state_and_the_fixed_rerun_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_csv(tmp_path / "users.csv", make_users(12))
    config = write_config(tmp_path, source, input={"id_column": "userid"})
    line = refused(["run", "--config", str(config)], capsys)
    assert "column 'userid' not found" in line
    assert not (tmp_path / "out").exists()
    config = write_config(tmp_path, source, processing={"processes": 1})
    assert main(["run", "--config", str(config), "--no-merge"]) == 0  # not "other settings"


def test_an_input_refused_midway_leaves_the_folder_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header and first rows pass; a ragged row far down stops the sharding after run.json
    and the first shards were written: they go again, and what was there before stays."""
    monkeypatch.setattr(readers, "_CSV_BLOCK_BYTES", 256)
    source = write_csv(tmp_path / "users.csv", make_users(40), extra=[["U9", "1"]])
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    config = write_config(tmp_path, source, processing={"processes": 1, "shard_size": 4})
    assert "cannot read as CSV" in refused(["run", "--config", str(config)], capsys)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_an_unusable_output_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    source = write_csv(tmp_path / "users.csv", make_users(5))
    blocker = tmp_path / "taken"
    blocker.write_text("a file")
    out = blocker if where == "file" else blocker / "out"
    config = write_config(tmp_path, source, output={"dir": str(out)})
    line = refused(["run", "--config", str(config)], capsys)
    assert str(out) in line
    assert blocker.read_text() == "a file"


def test_a_non_utf8_header_and_a_parquet_column_twice_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin = tmp_path / "latin.csv"
    latin.write_bytes(
        "user_id,amazon,flipkart,myntra,ajio,d\xe9penses\nU1,1,1,1,1,1\n".encode("latin-1")
    )
    config = write_config(tmp_path, latin)
    assert "not UTF-8" in refused(["run", "--config", str(config)], capsys)
    twice = tmp_path / "twice.parquet"
    columns = ["user_id", "amazon", "flipkart", "myntra", "ajio", "amazon"]
    arrays = [pa.array(["U1"])] + [pa.array([1.0])] * 5
    pq.write_table(pa.Table.from_arrays(arrays, names=columns), twice)
    config = write_config(tmp_path, twice)
    assert "column 'amazon' appears twice" in refused(["run", "--config", str(config)], capsys)
    assert not (tmp_path / "out").exists()


def test_a_missing_key_is_refused_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CG_NO_SUCH_KEY", raising=False)
    source = write_csv(tmp_path / "users.csv", make_users(5))
    api = {"auth": "partner-token", "key_env": "CG_NO_SUCH_KEY"}
    config = write_config(tmp_path, source, url="http://127.0.0.1:1/cg/api/pro", api=api)
    line = refused(["run", "--config", str(config)], capsys)
    assert "environment variable CG_NO_SUCH_KEY is not set" in line
    assert not (tmp_path / "out").exists()


def test_a_changed_run_is_refused_without_touching_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_csv(tmp_path / "users.csv", make_users(6))
    config = write_config(tmp_path, source, processing={"processes": 1})
    assert main(["run", "--config", str(config), "--no-merge"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    write_csv(source, make_users(7))
    assert "input.sha256" in refused(["run", "--config", str(config)], capsys)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
