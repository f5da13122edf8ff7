"""plan.py: the load arithmetic on known numbers, the input scan, and `pipeline plan` end to end
against the embedded mock API (with and without a probe)."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.api import cardgenius
from pipeline.cli import main
from pipeline.config import Config, build_config
from pipeline.inputs.shard import shard_input
from pipeline.mockapi import MockServer
from pipeline.plan import figures as plan
from pipeline.state.store import RunLayout

# Nine rows: U1, U2 and U3 send the same body (currency sign, thousands comma, an empty cell
# and the split between myntra and ajio do not change it); 2.675 and 2.67 both go out as 2.67
# (Python's rounding, as build_body does it); "n/a" and the repeated U1 are invalid.
USERS = """user_id,amazon,myntra,ajio
U1,1000,100,200
U2,"₹1,000",200,100
U3,1000,300,
U4,2000.5,0,0
U5,n/a,0,0
U1,5,0,0
U6,0,0,0
U7,2.675,0,0
U8,2.67,0,0
"""
CONFIG = """
[input]
path = "users.csv"

[request]
amazon_spends = "amazon"
other_online_spends = ["myntra", "ajio"]

[api]
mock = true

[processing]
max_workers = 10
processes = 1

[mock]
latency_ms = 5
jitter_ms = 0
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "users.csv").write_text(USERS, encoding="utf-8")
    (tmp_path / "config.toml").write_text(CONFIG, encoding="utf-8")
    return tmp_path


def config_of(workdir: Path, **tables: dict[str, object]) -> Config:
    raw: dict[str, object] = {
        "input": {"path": "users.csv"},
        "request": {"amazon_spends": "amazon", "other_online_spends": ["myntra", "ajio"]},
        "processing": {"max_workers": 10, "processes": 1},
        "mock": {"latency_ms": 5, "jitter_ms": 0},
        "api": {"mock": True},
    }
    raw.update(tables)
    return build_config(raw, source=workdir / "config.toml")


def figure(text: str, label: str) -> str:
    """The value printed after `label` at the start of a report line."""
    found = re.search(rf"^  {re.escape(label)}\s+(.+)$", text, re.MULTILINE)
    assert found, f"no line {label!r} in:\n{text}"
    return found.group(1)


# --- arithmetic


def test_rate_limited_load() -> None:
    load = plan.Load(
        requests=72_000,
        rate_limit=20.0,
        max_workers=10,
        latency_s=0.2,
        fastest_latency_s=0.1,
        request_bytes=500.0,
        response_bytes=35_000.0,
        response_wire_bytes=5_000.0,
    )
    fig = plan.load_figures(load)
    assert fig.sustained_rps == 20.0  # the limit, below 10 / 0.2 = 50
    assert fig.burst_rps == 21.0
    assert fig.connections == 10
    assert fig.duration_s == 3600.0
    assert fig.outbound_bps == 10_000.0
    assert fig.inbound_wire_bps == 100_000.0
    assert fig.inbound_bps == 700_000.0
    assert fig.day_in_bytes == 360_000_000.0  # an hour's batch: all of it in one day
    assert fig.day_out_bytes == 36_000_000.0
    assert fig.total_in_bytes == 360_000_000.0
    assert fig.total_out_bytes == 36_000_000.0


def test_unlimited_load_is_bounded_by_concurrency() -> None:
    assert plan.sustained_rps(0.0, 20, 0.1) == pytest.approx(200.0)
    assert plan.burst_rps(0.0, 20, 0.05) == pytest.approx(400.0)
    assert plan.sustained_rps(500.0, 20, 0.1) == pytest.approx(200.0)  # limit out of reach
    assert plan.burst_rps(500.0, 20, 0.05) == pytest.approx(400.0)
    assert plan.sustained_rps(0.0, 20, 0.0) == pytest.approx(20_000.0)  # latency floor 1 ms


def test_a_batch_longer_than_a_day() -> None:
    load = plan.Load(2_000_000, 5.0, 20, 0.15, 0.1, 600.0, 35_000.0, 5_000.0)
    fig = plan.load_figures(load)
    assert fig.duration_s == 400_000.0
    assert fig.day_in_bytes == 5.0 * 5_000.0 * 86_400
    assert fig.total_in_bytes == 10_000_000_000.0


# --- the input


def test_scan_counts_rows_invalid_rows_and_distinct_bodies(workdir: Path) -> None:
    facts = plan.scan_input(config_of(workdir), samples=10)
    assert (facts.rows, facts.invalid, facts.valid, facts.unique_bodies) == (9, 2, 7, 4)
    assert list(facts.samples) == [
        {"amazon_spends": 1000, "other_online_spends": 300},
        {"amazon_spends": 2000.5, "other_online_spends": 0},
        {"amazon_spends": 0, "other_online_spends": 0},
        {"amazon_spends": 2.67, "other_online_spends": 0},
    ]


def test_scan_agrees_with_the_bodies_a_run_would_send(workdir: Path) -> None:
    """Shard the input as a run does and build every body in Python: same distinct count."""
    config = config_of(workdir)
    layout = RunLayout(workdir / "out")
    report = shard_input(
        config.input.path,
        layout=layout,
        id_column="user_id",
        value_columns=config.value_columns,
        shard_size=4,
    )
    bodies = set()
    for name in report.shards:
        for row in pq.read_table(layout.input_shard(name)).to_pylist():
            if row["_invalid"] is None:
                parts = {f: tuple(row[c] for c in cols) for f, cols in config.request.items()}
                bodies.add(tuple(sorted(cardgenius.build_body(parts).items())))
    assert plan.scan_input(config).unique_bodies == len(bodies) == 4


def test_probe_spaces_requests_to_the_rate_limit(
    workdir: Path, mock_server: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CG_TEST_KEY", "mock-key")
    url = mock_server.base_url + "/cg/api/pro"
    config = config_of(
        workdir,
        api={"mock": False, "url": url, "auth": "partner-token", "key_env": "CG_TEST_KEY"},
        processing={"max_workers": 10, "processes": 1, "rate_limit": 20.0},
    )
    waits: list[float] = []
    bodies = [{"amazon_spends": 1000}, {"amazon_spends": 0}]
    result = plan.run_probe(config, bodies, 3, sleep=waits.append)
    assert result.sent == 3 and len(result.latencies_ms) == 3 and not result.errors
    assert len(waits) == 2 and all(0 < w <= 0.05 for w in waits)  # 1 / 20 s apart
    assert len(result.response_bytes) == 3  # the token request is not counted
    assert all(
        w < r for w, r in zip(result.response_wire_bytes, result.response_bytes, strict=True)
    )


# --- the command


def test_plan_without_probe(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--config", str(workdir / "config.toml")]) == 0
    text = capsys.readouterr().out
    assert figure(text, "rows") == "9"
    assert figure(text, "invalid rows") == "2 (never sent)"
    assert figure(text, "unique request bodies") == "4 (of 7 valid rows)"
    assert figure(text, "requests to send").startswith("4 (one per distinct request body")
    assert figure(text, "latency") == "5 ms mean (assumed)"  # [mock] latency_ms
    assert figure(text, "response size") == "35.0 KB, gzip 5.0 KB (assumed)"
    assert figure(text, "requests/s sustained") == "2,000.0 = max_workers / mean latency (assumed)"
    assert figure(text, "concurrent connections") == "10 (max_workers)"
    assert figure(text, "inbound bandwidth").startswith("10.0 MB/s (80.00 Mbit/s) gzip")
    assert figure(text, "data for the batch") == "20.0 KB in, 2.4 KB out (assumed)"
    assert "Probe:" not in text
    assert "Subject: Planned batch on the CardGenius API: 4 requests" in text
    assert "up to 10 concurrent HTTPS connections" in text


def test_plan_with_probe_measures(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["plan", "--config", str(workdir / "config.toml"), "--probe", "5", "--rate", "50"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert figure(text, "rows") == "9"
    assert figure(text, "unique request bodies") == "4 (of 7 valid rows)"
    assert "Probe: 5 request(s) to the embedded mock API, 5 answered" in text
    assert re.search(r"^  latency\s+p50 \d+ ms, p95 \d+ ms \(measured\)$", text, re.MULTILINE)
    size = figure(text, "response size")  # the probe's line comes first
    assert re.fullmatch(r"[\d.]+ KB uncompressed, [\d.]+ KB on the wire \(measured\)", size)
    assert figure(text, "requests/s sustained") == "50.0 = rate_limit"
    assert figure(text, "requests/s at burst") == "51.0 in any one second = rate_limit + 1"
    assert figure(text, "expected duration") == "0.1s, before retries"  # 4 requests at 50/s
    assert "(assumed)" not in text
    assert "at most 50 requests/s, evenly spaced (never more than 51" in text


def test_plan_without_dedupe_sends_every_valid_row(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = workdir / "config.toml"
    text = CONFIG.replace("processes = 1\n", "processes = 1\ndedupe_requests = false\n")
    config.write_text(text, encoding="utf-8")
    assert main(["plan", "--config", str(config)]) == 0
    assert figure(capsys.readouterr().out, "requests to send").startswith("7 (one per valid row")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--input", "missing.csv"], "missing.csv: file not found"),
        (["--probe", "-1"], "--probe -1: must be 0"),
    ],
)
def test_plan_errors_are_one_line_and_exit_2(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(workdir)
    assert main(["plan", "--config", "config.toml", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1]


def test_plan_names_a_missing_column(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (workdir / "users.csv").write_text("user_id,amazon\nU1,5\n", encoding="utf-8")
    assert main(["plan", "--config", str(workdir / "config.toml")]) == 2
    assert "'myntra', 'ajio' not found" in capsys.readouterr().err


def test_plan_shows_the_partner_windows_and_the_duration_through_them(workdir: Path) -> None:
    from datetime import datetime, timezone

    window = {"from": "09:00", "to": "18:00", "rate": 0.001, "tz": "Asia/Kolkata"}
    config = config_of(workdir, processing={"max_workers": 10, "windows": [window]})
    start = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)  # 17:30 in Kolkata
    text = plan.plan(config, now=start)
    assert figure(text, "window") == "09:00-18:00 Asia/Kolkata: at most 0.001 requests/s"
    assert figure(text, "now") == (
        "window 09:00-18:00 Asia/Kolkata: 0.001 req/s; from 18:00 no client limit (in 30m)"
    )
    # 4 requests at 0.001/s: 1.8 of them in the half hour left; the rest at 2,000/s after.
    assert figure(text, "duration, windows in").startswith("30m00s from now")
    assert "09:00-18:00 Asia/Kolkata: at most 0.001 requests/s" in text
    assert "expected duration 30m00s" in text
