"""Notifications received by a real local HTTP server, and a bad webhook that must not slow
the run; metrics scraped from a running run with `requests` and parsed by prometheus_client."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from support import make_users, results, write_config, write_csv

from pipeline import schema
from pipeline.cli import main
from pipeline.config import load_config
from pipeline.errors import EXIT_FAILED_ROWS
from pipeline.mockapi import MockServer, MockSettings, Rule
from pipeline.ops.notify import FLUSH_SECONDS, webhook_url
from pipeline.ops.operations import Operations
from pipeline.state.runinfo import file_log
from pipeline.state.store import RunLayout

ENV = "PIPELINE_TEST_WEBHOOK"


class Hook:
    """A webhook on a real port that records each JSON body; `mode` is "ok", "500" or
    "hang" (answers after 30 s, past any timeout)."""

    def __init__(self, mode: str = "ok", on_body: Callable[[dict[str, Any]], None] | None = None):
        self.mode = mode
        self.bodies: list[dict[str, Any]] = []
        self.tries = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.tries += 1
                if hook.mode == "hang":
                    time.sleep(30)
                code = 500 if hook.mode == "500" else 200
                if code == 200:
                    hook.bodies.append(json.loads(body))
                    if on_body is not None:
                        on_body(hook.bodies[-1])
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/secret-token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mock() -> Iterator[MockServer]:
    with MockServer(MockSettings(latency_ms=2, jitter_ms=1)) as server:
        yield server


def config_for(tmp_path: Path, mock: MockServer, rows: int, **sections: dict[str, Any]) -> Path:
    users = make_users(rows, seed=9)
    source = write_csv(tmp_path / "users.csv", users)
    tables: dict[str, dict[str, Any]] = {
        "processing": {"processes": 2, "max_workers": 8, "shard_size": 50},
        "notify": {"webhook_env": ENV, "every_percent": 25},
    }
    for name, values in sections.items():
        tables.setdefault(name, {}).update(values)
    return write_config(tmp_path, source, url=mock.base_url + "/cg/api/pro", **tables)


def test_messages_arrive_in_order_with_the_counts(
    tmp_path: Path, mock: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = Hook()
    monkeypatch.setenv(ENV, hook.url)
    try:
        config = config_for(tmp_path, mock, 400, processing={"rate_limit": 200.0})
        assert main(["run", "--config", str(config), "--no-progress"]) == 0
    finally:
        hook.close()
    events = [b["event"] for b in hook.bodies]
    assert events == ["started", "progress", "progress", "progress", "finished"], events
    assert [b["fields"]["percent"] for b in hook.bodies[1:4]] == [25, 50, 75]
    assert all(b["text"] and b["fields"]["folder"] for b in hook.bodies)
    finished = hook.bodies[-1]["fields"]
    assert finished["exit_code"] == 0
    states = Counter(results(tmp_path / "out").column("status").to_pylist())
    assert finished["rows"] == {s: states.get(s, 0) for s in schema.STATES}
    assert sum(finished["rows"].values()) == 400
    assert finished["workbook"] == str((tmp_path / "out" / "results.xlsx").resolve())
    run_info = json.loads((tmp_path / "out" / "run.json").read_text())
    assert finished["duration_seconds"] == round(run_info["elapsed_seconds"], 1) > 0
    sent = json.dumps(hook.bodies)
    assert "U00" not in sent and "secret-token" not in sent  # no user, no webhook URL
    log = (tmp_path / "out" / "pipeline.log").read_text()
    assert "Notification (finished)" in log and "secret-token" not in log


def test_an_outage_and_the_stop_it_causes_are_told_with_the_reason(
    tmp_path: Path, mock: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = Hook()
    monkeypatch.setenv(ENV, hook.url)
    config = config_for(
        tmp_path,
        mock,
        40,
        api={"url": "http://127.0.0.1:9/cg/api/pro"},  # nothing listens: refused at once
        retry={"max_attempts": 50, "give_up_after": 1.0},
        notify={"every_percent": 0},
    )
    try:
        assert main(["run", "--config", str(config), "--no-progress"]) == 3
    finally:
        hook.close()
    events = [b["event"] for b in hook.bodies]
    assert events == ["started", "api_down", "stopped"], events
    stopped = hook.bodies[-1]["fields"]
    assert stopped["exit_code"] == 3
    assert "the API stayed unavailable" in stopped["reason"]


@pytest.mark.parametrize("mode", ["hang", "500"])
def test_a_bad_webhook_does_not_slow_the_run(
    tmp_path: Path, mock: MockServer, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """The same rate-bound run with a good and a bad webhook: the requests take as long, and
    the end waits for the last message at most FLUSH_SECONDS."""
    spans, totals = [], []
    for attempt, kind in enumerate(("ok", mode)):
        hook = Hook(kind)
        monkeypatch.setenv(ENV, hook.url)
        mock.reset_stats()
        (tmp_path / kind).mkdir()
        # Both runs send every row: the second does not reuse the first's answers.
        no_reuse = {"max_age": "0"}
        config = config_for(
            tmp_path / kind, mock, 200, processing={"rate_limit": 100.0}, cache=no_reuse
        )
        started = time.monotonic()
        try:
            code = main(["run", "--config", str(config), "--no-progress", "--no-merge"])
        finally:
            totals.append(time.monotonic() - started)
            hook.close()
        assert code == 0
        arrivals = sorted(mock.stats()["arrivals"])
        spans.append(arrivals[-1] - arrivals[0])
        if attempt:
            assert hook.tries >= 1 and not hook.bodies
    # A webhook that held the run up would cost it SEND_TIMEOUT (3 s) a message, or more;
    # the margins are for a loaded machine.
    assert spans[1] <= spans[0] * 1.5 + 1.0, spans
    assert totals[1] <= totals[0] * 1.5 + FLUSH_SECONDS + 1.0, totals


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return samples


def test_metrics_rise_during_the_run_and_end_at_the_summary(
    tmp_path: Path, mock: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    final: list[dict[str, float]] = []

    def at_the_end(body: dict[str, Any]) -> None:
        # The `finished` message goes out while the run still serves its metrics.
        if body["event"] == "finished":
            final.append(scrape(port))

    hook = Hook(on_body=at_the_end)
    monkeypatch.setenv(ENV, hook.url)
    config = config_for(
        tmp_path, mock, 300, processing={"rate_limit": 150.0}, metrics={"port": port}
    )
    codes: list[int] = []
    runner = threading.Thread(
        target=lambda: codes.append(main(["run", "--config", str(config), "--no-progress"]))
    )
    runner.start()
    seen: list[dict[str, float]] = []
    while runner.is_alive():
        with contextlib.suppress(requests.ConnectionError):  # not serving yet, or any more
            seen.append(scrape(port))
        time.sleep(0.05)
    runner.join()
    hook.close()
    assert codes == [0] and len(final) == 1
    answered = [s.get("pipeline_requests_total{status=ok}", 0.0) for s in seen]
    assert answered == sorted(answered) and answered[0] < answered[-1], answered
    last = final[0]
    summary = dict(json.loads((tmp_path / "out" / "run.json").read_text())["last_invocation"])
    for state in schema.STATES:
        assert last.get(f"pipeline_rows_total{{state={state}}}", 0) == summary[f"rows {state}"]
    assert last["pipeline_requests_total{status=ok}"] == summary["requests sent"]
    assert last.get("pipeline_retries_total", 0) == summary["retries"]
    assert last.get("pipeline_throttled_total", 0) == summary["429 answers"]
    assert last["pipeline_request_latency_seconds_count"] == summary["requests sent"]
    assert last["pipeline_rows_in_run"] == 300
    assert last["pipeline_shards"] == 6
    assert 0 < last["pipeline_rate_limit"] <= 150.0
    assert "pipeline_eta_seconds" in last and "pipeline_in_flight" in last


def test_metrics_port_in_use_is_exit_2_before_the_folder_is_touched(
    tmp_path: Path, mock: MockServer, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = config_for(tmp_path, mock, 10, metrics={"port": port}, notify={"webhook_env": ""})
        assert main(["run", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert f"[metrics] port = {port}: cannot serve metrics on 127.0.0.1:{port}" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_stall_is_told_once_and_so_is_the_move_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers that take 2.5 s and a stall_after of 1.2 s: each wait is a stall."""
    hook = Hook()
    monkeypatch.setenv(ENV, hook.url)
    with MockServer(MockSettings(latency_ms=2500, jitter_ms=0)) as slow:
        config = config_for(
            tmp_path,
            slow,
            4,
            processing={"processes": 1, "max_workers": 2, "dedupe_requests": False},
            notify={"every_percent": 0, "stall_after": 0.02},
        )
        try:
            assert main(["run", "--config", str(config), "--no-progress", "--no-merge"]) == 0
        finally:
            hook.close()
    events = [b["event"] for b in hook.bodies]
    assert events[0] == "started" and events[-1] == "finished", events
    middle = events[1:-1]
    assert middle[:2] == ["stalled", "moving"], events
    assert all(a != b for a, b in itertools.pairwise(middle)), events  # once each


def test_the_api_going_away_and_coming_back_is_told(
    tmp_path: Path, mock: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = Hook()
    monkeypatch.setenv(ENV, hook.url)
    mock.add_rule(Rule({}, 503, "<html>down for maintenance</html>", times=6))
    config = config_for(
        tmp_path,
        mock,
        40,
        processing={"processes": 1, "max_workers": 2},
        retry={"max_attempts": 20},
        notify={"every_percent": 0},
    )
    try:
        assert main(["run", "--config", str(config), "--no-progress", "--no-merge"]) == 0
    finally:
        hook.close()
    events = [b["event"] for b in hook.bodies]
    assert events == ["started", "api_down", "api_up", "finished"], events
    assert hook.bodies[2]["fields"]["down_seconds"] > 0


def test_the_finished_message_says_the_coordinators_counts_without_reading_again(
    tmp_path: Path, mock: MockServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the end the coordinator counts the rows by state (its exit code depends on them)
    and hands the counts over: the message does not read every result shard a second time.
    Here the one result shard is damaged after the count, which a second read would trip on."""
    hook = Hook()
    monkeypatch.setenv(ENV, hook.url)
    config = load_config(config_for(tmp_path, mock, 10))
    layout = RunLayout(config.output.dir)
    layout.results_dir.mkdir(parents=True)
    layout.result_shard(layout.shard_name(0)).write_bytes(b"not parquet")
    counts = {schema.OK: 7, schema.NO_CARDS: 1, schema.INVALID_STATE: 0, schema.FAILED: 2}
    try:
        ops = Operations(config, layout, webhook_url(config.notify))
        ops.counted(counts)
        assert ops.ended(EXIT_FAILED_ROWS) == EXIT_FAILED_ROWS
    finally:
        hook.close()
    finished = hook.bodies[-1]
    assert finished["event"] == "finished" and finished["fields"]["rows"] == counts
    assert "ok 7, no_cards 1, invalid 0, failed 2" in finished["text"]


def test_a_line_logged_after_the_run_log_is_closed_does_not_open_it_again(tmp_path: Path) -> None:
    # A notifier that gave up on its webhook can still hold the run log's handler as the run
    # ends: its late line must not open pipeline.log again (and leave the file open).
    layout = RunLayout(tmp_path / "out")
    log = logging.getLogger("pipeline")
    with file_log(layout):
        handler = log.handlers[-1]
        log.warning("during the run")
    late = logging.LogRecord("pipeline", logging.WARNING, __file__, 1, "after it", None, None)
    handler.handle(late)
    assert getattr(handler, "stream", "") is None  # not opened again
    text = layout.log_file.read_text(encoding="utf-8")
    assert "during the run" in text and "after it" not in text
