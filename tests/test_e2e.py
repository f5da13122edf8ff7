"""End to end through the CLI against the mock API on a real loopback port.

Each test writes a config and an input into tmp_path, calls `cli.main` in-process (the worker
processes are real), and reads back the result shards and the workbook.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import COLUMNS, check_against_model, make_users, results, write_config, write_csv

from pipeline.cli import main
from pipeline.mockapi import MockServer, MockSettings, Rule


@pytest.mark.parametrize(
    "processing",
    [
        {"processes": 2, "max_workers": 4},
        {"processes": 1, "max_workers": 1},
    ],
    ids=["pool", "sequential"],
)
def test_run_end_to_end_on_the_embedded_mock(
    tmp_path: Path, processing: dict[str, int], capsys: pytest.CaptureFixture[str]
) -> None:
    users = make_users(50)
    source = write_csv(tmp_path / "users.csv", users)
    config = write_config(tmp_path, source, processing=processing)
    assert main(["run", "--config", str(config), "--no-progress"]) == 0
    out = tmp_path / "out"
    check_against_model(results(out), users, MockSettings())
    # Under the run's table: its most frequent best card, with its users.
    names = [n for n in results(out).column("top1_card_name").to_pylist() if n is not None]
    first = max(sorted(set(names)), key=names.count)
    after = capsys.readouterr().err.split("Best cards (top ")[1]
    line = next(line for line in after.splitlines() if first in line)
    assert line.rstrip(" │").endswith(f"{names.count(first):,}")
    book = openpyxl.load_workbook(out / "results.xlsx")
    assert book.sheetnames[:4] == ["Summary", "Insights", "Results", "Failures"]
    ids = [row[0] for row in book["Results"].iter_rows(min_row=2, values_only=True)]
    assert ids == [u["user_id"] for u in users]
    assert (out / "run.json").is_file() and (out / "pipeline.log").is_file()
    assert "Progress: 50/50 users processed (100.0%)" in (out / "pipeline.log").read_text()


def test_input_formats_give_the_same_results(tmp_path: Path) -> None:
    users = make_users(20, seed=5)
    csv_path = write_csv(tmp_path / "users.csv", users)
    table = pa.Table.from_pylist(users)
    pq.write_table(table, tmp_path / "users.parquet")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(COLUMNS)
    for user in users:
        sheet.append([user[c] for c in COLUMNS])
    book.save(tmp_path / "users.xlsx")

    outcomes = []
    for source in (csv_path, tmp_path / "users.parquet", tmp_path / "users.xlsx"):
        config = write_config(tmp_path, source, processing={"processes": 1, "max_workers": 4})
        out = tmp_path / f"out-{source.suffix[1:]}"
        assert main(["run", "--config", str(config), "--out", str(out), "--no-merge"]) == 0
        # The second and third formats are answered from the answer store: the same answers,
        # but not the same attempts, nor the time they were fetched.
        calls = ["latency_ms", "attempts", "answered_at", "reused"]
        outcomes.append(results(out).drop_columns(calls))
    assert outcomes[0].equals(outcomes[1]) and outcomes[0].equals(outcomes[2])


def test_resume_skips_finished_shards(tmp_path: Path) -> None:
    users = make_users(64)
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        source = write_csv(tmp_path / "users.csv", users)
        # Without dedupe, so that the counts show which rows are requested again.
        config = write_config(
            tmp_path,
            source,
            url=server.base_url + "/cg/api/pro",
            processing={"dedupe_requests": False},
            cache={"max_age": "0"},  # nor answers reused from the answer store
        )
        assert main(["run", "--config", str(config), "--no-merge"]) == 0
        assert server.stats()["calculate"] == 64
        (tmp_path / "out" / "shards" / "results" / "shard-00002.parquet").unlink()
        server.reset_stats()
        assert main(["run", "--config", str(config)]) == 0
        assert server.stats()["calculate"] == 16  # only the shard without a result
        server.reset_stats()
        assert main(["run", "--config", str(config), "--fresh"]) == 0
        assert server.stats()["calculate"] == 64
    check_against_model(results(tmp_path / "out"), users, MockSettings())


def test_failed_rows_then_rerun_failed(tmp_path: Path) -> None:
    users = make_users(40)
    users[7]["amazon"] = 4242  # always refused: a permanent failure
    users[20]["amazon"] = 777  # fails every attempt of the first run, then recovers
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        server.add_rule(
            Rule(
                match={"amazon_spends": 4242},
                status=400,
                body='{"success": false, "message": "bad"}',
            )
        )
        server.add_rule(Rule(match={"amazon_spends": 777}, status=503, body="busy", times=3))
        source = write_csv(tmp_path / "users.csv", users)
        config = write_config(tmp_path, source, url=server.base_url + "/cg/api/pro")
        assert main(["run", "--config", str(config)]) == 1
        table = results(tmp_path / "out").to_pylist()
        assert (table[7]["status"], table[7]["http_status"], table[7]["attempts"]) == (
            "failed",
            400,
            1,
        )
        assert (table[20]["status"], table[20]["http_status"], table[20]["attempts"]) == (
            "failed",
            503,
            3,
        )
        book = openpyxl.load_workbook(tmp_path / "out" / "results.xlsx")
        failures = list(book["Failures"].iter_rows(min_row=2, values_only=True))
        assert [f[0] for f in failures] == ["U00007", "U00020"]

        server.reset_stats()
        assert main(["rerun-failed", "--config", str(config)]) == 1  # 4242 still refused
        assert server.stats()["calculate"] == 2  # only the failed rows
        table = results(tmp_path / "out").to_pylist()
        assert table[20]["status"] == "ok" and table[7]["status"] == "failed"
        assert [r["user_id"] for r in table] == [u["user_id"] for u in users]


def test_invalid_rows_are_listed_not_sent(tmp_path: Path) -> None:
    users = make_users(10)
    extra = [
        ["U9", "abc", "1", "2", "3"],
        ["U00001", "5", "5", "5", "5"],
        ["", "1", "1", "1", "1"],
        ["U10", "₹1,200", "-4", "0", "0"],
        ["U11", "₹1,200", "", " 3 ", "0"],
    ]
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        source = write_csv(tmp_path / "users.csv", users, extra)
        config = write_config(
            tmp_path,
            source,
            url=server.base_url + "/cg/api/pro",
            processing={"dedupe_requests": False},
        )
        assert main(["run", "--config", str(config)]) == 0
        assert server.stats()["calculate"] == 11
    rows = results(tmp_path / "out").to_pylist()
    states = [r["status"] for r in rows[10:]]
    assert states == ["invalid", "invalid", "invalid", "invalid", "ok"]
    assert rows[14]["amazon"] == 1200.0 and rows[14]["myntra"] == 3.0
    book = openpyxl.load_workbook(tmp_path / "out" / "results.xlsx")
    failures = list(book["Failures"].iter_rows(min_row=2, values_only=True))
    assert len(failures) == 4
    assert all(f[1] == "invalid" and f[4] for f in failures)
    # Rows as the user's editor counts them: the header is row 1, the 10 users rows 2-11.
    assert [f[4] for f in failures] == [
        "row 12: amazon: 'abc' is not a number",
        "row 13: duplicate user_id (first at row 3)",
        "row 14: missing user_id",
        "row 15: flipkart: -4 is negative",
    ]


def test_hostile_card_names_are_text_cells(tmp_path: Path) -> None:
    users = make_users(30)
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0, hostile_names=True)) as server:
        source = write_csv(tmp_path / "users.csv", users)
        config = write_config(tmp_path, source, url=server.base_url + "/cg/api/pro")
        assert main(["run", "--config", str(config)]) == 0
    book = openpyxl.load_workbook(tmp_path / "out" / "results.xlsx")
    sheet = book["Results"]
    header = [c.value for c in sheet[1]]
    names = [row[header.index("top1_card_name")] for row in sheet.iter_rows(min_row=2)]
    dangerous = [c for c in names if isinstance(c.value, str) and c.value[:1] in "=+-@"]
    assert dangerous, "the hostile catalogue should put such a card on top for some user"
    assert all(c.data_type == "s" for c in dangerous)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"processing": {"max_workers": 0}}, "[processing] max_workers = 0: must be at least 1"),
        ({"input": {"id_column": "uid"}}, "column 'uid' not found"),
    ],
)
def test_bad_config_and_input_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: dict[str, Any], fragment: str
) -> None:
    source = write_csv(tmp_path / "users.csv", make_users(5))
    config = write_config(tmp_path, source, **extra)
    assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len([line for line in err if line.startswith("error:")]) == 1
    assert fragment in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out" / "shards" / "results").exists()


def test_changed_input_is_refused_until_fresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = make_users(10)
    source = write_csv(tmp_path / "users.csv", users)
    config = write_config(tmp_path, source, processing={"processes": 1})
    assert main(["run", "--config", str(config), "--no-merge"]) == 0
    write_csv(source, make_users(11))
    assert main(["run", "--config", str(config)]) == 2
    assert "input.sha256" in capsys.readouterr().err
    assert main(["run", "--config", str(config), "--fresh", "--no-merge"]) == 0
    assert results(tmp_path / "out").num_rows == 11


def test_status_json_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    source = write_csv(tmp_path / "users.csv", make_users(20))
    config = write_config(tmp_path, source, processing={"processes": 1, "shard_size": 8})
    assert main(["status", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"] is False
    assert main(["run", "--config", str(config), "--no-merge"]) == 0
    capsys.readouterr()
    assert main(["status", "--config", str(config), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["shards"] == {"total": 3, "finished": 3, "pending": 0}
    assert facts["rows_by_state"]["ok"] + facts["rows_by_state"]["no_cards"] == 20
    assert main(["status", "--config", str(config)]) == 0
    assert "shards: 3/3 finished" in capsys.readouterr().out


def test_hostile_numbers_in_answers_fail_their_rows_and_never_reach_the_outputs(
    tmp_path: Path,
) -> None:
    """NaN, Infinity, 1e400, a number past Excel's, an id past 64 bits, a card without a
    field: each answer is unusable (retried, then failed naming the field); the run ends,
    and the workbook and the CSV hold no inf or nan."""
    card = (
        '{"id": 7, "card_name": "C", "joining_fees": "0", "total_savings_yearly": YEARLY, '
        '"total_extra_benefits": 0, "spending_breakdown": {}}'
    )
    hostile = {
        9001: card.replace("YEARLY", "NaN"),
        9002: card.replace("YEARLY", "Infinity"),
        9003: card.replace("YEARLY", "1e400"),
        9004: card.replace("YEARLY", "1.5e308"),
        9005: card.replace('"id": 7', '"id": 1180591620717411303424').replace("YEARLY", "1"),
        9006: card.replace('"total_savings_yearly": YEARLY, ', ""),
    }
    users = make_users(30)
    for i, amount in enumerate(hostile):
        users[10 + i]["amazon"] = amount
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        for amount, text in hostile.items():
            body = '{"success": true, "savings": [' + text + "]}"
            server.add_rule(Rule(match={"amazon_spends": amount}, status=200, body=body))
        source = write_csv(tmp_path / "users.csv", users)
        config = write_config(tmp_path, source, url=server.base_url + "/cg/api/pro")
        assert main(["run", "--config", str(config)]) == 1
        assert main(["merge", "--config", str(config), "--format", "csv"]) == 0
    rows = results(tmp_path / "out").to_pylist()
    failed = {r["user_id"]: r for r in rows if r["status"] == "failed"}
    assert sorted(failed) == [f"U{10 + i:05d}" for i in range(6)]
    errors = [failed[f"U{10 + i:05d}"]["error"] for i in range(6)]
    assert errors[0] == "bad body: answer holds NaN, which is not JSON"
    assert errors[1] == "bad body: answer holds Infinity, which is not JSON"
    assert "total_savings_yearly is inf" in errors[2]
    assert "total_savings_yearly is 1.5e+308" in errors[3]
    assert "not a whole number of 64 bits" in errors[4]
    assert errors[5] == "bad body: card 1 has no total_savings_yearly"
    assert all(r["attempts"] == 3 for r in failed.values())  # retried: max_attempts = 3
    with open(tmp_path / "out" / "results.csv", encoding="utf-8-sig", newline="") as handle:
        fields = [f.strip().lower() for row in csv.reader(handle) for f in row]
    assert not {"inf", "-inf", "nan", "infinity"} & set(fields)
    book = openpyxl.load_workbook(tmp_path / "out" / "results.xlsx")
    numbers = [v for s in book for row in s.iter_rows(values_only=True) for v in row]
    assert all(math.isfinite(v) for v in numbers if isinstance(v, float))


def test_every_output_of_a_mock_run_says_its_answers_are_simulated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.config import load_config
    from pipeline.run import coordinator

    source = write_csv(tmp_path / "users.csv", make_users(8))
    config = load_config(write_config(tmp_path, source, processing={"processes": 1}))
    assert coordinator.run(config, coordinator.RunOptions(progress="live")) == 0
    assert "SIMULATED answers" in capsys.readouterr().out  # the live view's title
    out = tmp_path / "out"
    first = (out / "pipeline.log").read_text().splitlines()[0]
    assert "SIMULATED answers: the embedded mock API answers this run" in first
    summary = openpyxl.load_workbook(out / "results.xlsx")["Summary"]
    lines = {row[0]: row[1] for row in summary.iter_rows(values_only=True)}
    assert lines["answers from"] == "the embedded mock API (simulated)"
    assert any(str(label).startswith("Simulated answers") for label in lines)

    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        url = server.base_url + "/cg/api/pro"
        config = load_config(write_config(tmp_path, source, url=url, output={"dir": "live"}))
        assert coordinator.run(config, coordinator.RunOptions(progress="live")) == 0
    assert "SIMULATED" not in capsys.readouterr().out
    assert "SIMULATED" not in (tmp_path / "live" / "pipeline.log").read_text()
    summary = openpyxl.load_workbook(tmp_path / "live" / "results.xlsx")["Summary"]
    lines = {row[0]: row[1] for row in summary.iter_rows(values_only=True)}
    assert lines["answers from"] == url
    assert not any(str(label).startswith("Simulated answers") for label in lines)
