"""`pipeline import-config`: the thread-pool script's JSON config to a config.toml that runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import tomllib
from support import results

from pipeline.cli import main
from pipeline.mockapi import MockServer, Rule

COLUMNS = ["userid", "avg_amazon_gmv", "avg_flipkart_gmv", "avg_grocery_gmv"]
COLUMNS += ["avg_myntra_gmv", "avg_ajio_gmv", "avg_confirmed_gmv"]


def old_config(base_url: str, **changes: Any) -> dict[str, Any]:
    """The script's config, in its shape; `changes` replace whole tables."""
    config: dict[str, Any] = {
        "api": {
            "base_url": base_url,
            "timeout": 10,
            "sleep_between_requests": 0.01,
            "max_retries": 2,
        },
        "excel": {
            "input_file": "users.xlsx",
            "output_file": "reports/cards.xlsx",
            "sheet_name": "Users",
        },
        "column_mappings": {
            "user_id": "userid",
            "amazon_spends": "avg_amazon_gmv",
            "flipkart_spends": "avg_flipkart_gmv",
            "grocery": "avg_grocery_gmv",
            "myntra": "avg_myntra_gmv",
            "ajio": "avg_ajio_gmv",
            "avg_gmv": "avg_confirmed_gmv",
        },
        "processing": {
            "top_n_cards": 2,
            "other_online_mode": "sum_components",
            "skip_empty_rows": True,
            "continue_on_error": True,
        },
    }
    return config | changes


def write_old(folder: Path, config: dict[str, Any]) -> Path:
    path = folder / "old.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def users(count: int) -> list[list[Any]]:
    # Distinct amazon spends: every user's request body is their own.
    return [[f"{i:04d}", 1000 + i, i % 3 * 500, 250, 100 * i, 0, 7] for i in range(count)]


def expected_body(user: list[Any]) -> dict[str, float]:
    """The body the mapping says: other_online_spends = myntra + ajio + avg_gmv."""
    _, amazon, flipkart, grocery, myntra, ajio, confirmed = user
    return {
        "amazon_spends": amazon,
        "flipkart_spends": flipkart,
        "grocery_spends_online": grocery,
        "other_online_spends": myntra + ajio + confirmed,
    }


def answer_for(user_id: str) -> str:
    card = {
        "id": 7,
        "card_name": f"card for {user_id}",
        "joining_fees": "0",
        "total_savings_yearly": 1200,
        "total_extra_benefits": 0,
    }
    return json.dumps({"success": True, "message": "", "savings": [card]})


def test_imported_config_runs_and_sends_the_mapped_bodies(
    tmp_path: Path, mock_server: MockServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = users(12)
    book = openpyxl.Workbook()
    book.active.title = "Other"
    sheet = book.create_sheet("Users")
    for line in [COLUMNS, *rows]:
        sheet.append(line)
    book.save(tmp_path / "users.xlsx")
    old = write_old(tmp_path, old_config(mock_server.base_url))
    new = tmp_path / "conf" / "config.toml"
    new.parent.mkdir()

    assert main(["import-config", str(old), "-o", str(new)]) == 0
    printed = capsys.readouterr().out
    assert f"pipeline run --config {new}" in printed
    assert "processing.skip_empty_rows" in printed and "processing.continue_on_error" in printed
    toml = tomllib.loads(new.read_text(encoding="utf-8"))
    assert toml["input"] == {"path": "../users.xlsx", "sheet": "Users", "id_column": "userid"}
    assert toml["api"]["url"] == f"{mock_server.base_url}/cg/api/pro"
    assert toml["processing"]["rate_limit"] == 2000.0  # 20 threads, 0.01 s apart each
    assert toml["retry"]["max_attempts"] == 3 and toml["output"]["top_n"] == 2

    # Each user's own body gets an answer naming the user: any other body would not.
    for user in rows:
        mock_server.add_rule(Rule(expected_body(user), 200, answer_for(user[0])))
    assert main(["run", "--config", str(new), "--no-progress"]) == 0
    out = tmp_path / "reports"
    table = results(out)
    assert table.column("userid").to_pylist() == [u[0] for u in rows]
    assert table.column("top1_card_name").to_pylist() == [f"card for {u[0]}" for u in rows]
    assert mock_server.stats()["by_path"] == {"/cg/api/pro": len(rows)}
    summary = {
        line[0]: line[1]
        for line in openpyxl.load_workbook(out / "cards.xlsx")["Summary"].iter_rows(
            values_only=True
        )
    }
    assert summary["answers from"] == f"{mock_server.base_url}/cg/api/pro"  # not simulated
    assert not any(str(label).startswith("Simulated answers") for label in summary)


def test_an_existing_file_is_never_overwritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = write_old(tmp_path, old_config("https://api.example.com"))
    new = tmp_path / "config.toml"
    new.write_text("# mine\n", encoding="utf-8")
    assert main(["import-config", str(old), "-o", str(new)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {new} exists; give another file with -o, or move it away first\n"
    assert new.read_text(encoding="utf-8") == "# mine\n"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"api": {"timeout": "slow"}}, 'api.timeout = "slow": must be a number'),
        ({"api": {"max_retries": 1.5}}, "api.max_retries = 1.5: must be a whole number"),
        ({"api": {"base_url": "api.example.com"}}, 'api.base_url = "api.example.com": must'),
        ({"excel": {"sheet_name": 2}}, "excel.sheet_name = 2: only 0 (the first sheet)"),
        ({"excel": {"output_file": "out.csv"}}, 'excel.output_file = "out.csv": must be an .xlsx'),
        (
            {"column_mappings": {"user_id": "id", "fuel_spend": "fuel"}},
            "column_mappings.fuel_spend = \"fuel\": 'fuel_spend' is not one of",
        ),
        ({"column_mappings": {"user_id": "id"}}, 'column_mappings = {"user_id": "id"}: maps no'),
        (
            {"processing": {"other_online_mode": "avg_gmv_only"}},
            'processing.other_online_mode = "avg_gmv_only": only "sum_components"',
        ),
    ],
)
def test_errors_name_the_key_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], message: str
) -> None:
    config = old_config("https://api.example.com")
    for table, values in change.items():
        config[table] = values if table == "column_mappings" else config[table] | values
    old = write_old(tmp_path, config)
    new = tmp_path / "config.toml"
    assert main(["import-config", str(old), "-o", str(new)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {old}: {message}")
    assert not new.exists()


def test_script_defaults_and_unknown_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = old_config("https://api.example.com/cg/api/beta/", excel={"input_file": "u.csv"})
    config["api"]["sleep_between_requests"] = 0
    config["processing"] = {"max_workers": 8, "batch_size": 100}
    config["notify"] = {"email": "x@example.com"}
    old = write_old(tmp_path, config)
    assert main(["import-config", str(old), "-o", str(tmp_path / "c.toml")]) == 0
    printed = capsys.readouterr().out
    toml = tomllib.loads((tmp_path / "c.toml").read_text(encoding="utf-8"))
    assert toml["api"]["url"] == "https://api.example.com/cg/api/beta/"
    assert toml["processing"] == {"max_workers": 8, "processes": 2, "rate_limit": 0.0}
    assert "output" not in toml and toml["input"]["path"] == "u.csv"
    for key in ("processing.batch_size", "notify.email"):
        assert f"  {key}: not a key of the script's config; ignored" in printed


def test_a_missing_or_broken_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.json"
    assert main(["import-config", str(missing), "-o", str(tmp_path / "c.toml")]) == 2
    assert capsys.readouterr().err == f"error: {missing}: the script's config not found\n"
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    assert main(["import-config", str(broken), "-o", str(tmp_path / "c.toml")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {broken}: not valid JSON")
    assert not (tmp_path / "c.toml").exists()
