"""traffic/refusal.py, and the run it stops: refused credentials and one permanent error for
everything end the run within seconds with exit 4, no row failed, state saved; a rerun with
the fault fixed finishes the table. The mock runs on a real port; the workers are real."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support import make_users, results, write_config, write_csv

from pipeline.cli import main
from pipeline.mockapi import MockServer, MockSettings, Rule
from pipeline.traffic.refusal import FAIL, HOLD, REFUSE, RELEASE, RefusalJudge

NOT_FOUND = "HTTP 404: No route POST /cg/api/nope"


def test_judge_refuses_after_ten_alike_and_never_after_an_answer() -> None:
    judge = RefusalJudge()
    assert [judge.permanent(NOT_FOUND) for _ in range(9)] == [HOLD] * 9
    assert judge.permanent(NOT_FOUND) == REFUSE
    assert judge.refusal == (
        f"its first 10 answers were all {NOT_FOUND}, and none succeeded "
        "(a wrong [api] url, or an API that changed?)"
    )
    answered = RefusalJudge()
    assert answered.permanent("HTTP 400: bad") == HOLD
    assert answered.answered() is True  # the held row fails now
    assert [answered.permanent("HTTP 400: bad") for _ in range(20)] == [FAIL] * 20
    differ = RefusalJudge()
    assert differ.permanent("HTTP 400: bad") == HOLD
    assert differ.permanent("HTTP 400: worse") == RELEASE
    assert differ.permanent("HTTP 400: bad") == FAIL


def test_judge_at_a_shards_end() -> None:
    few = RefusalJudge()
    few.permanent("HTTP 400: bad")
    few.permanent("HTTP 400: bad")
    assert few.shard_ended() is None  # two alike may be two bad rows: they fail
    assert few.permanent("HTTP 400: bad") == FAIL
    three = RefusalJudge()
    for _ in range(3):
        three.permanent("HTTP 400: bad")
    assert three.shard_ended() is not None and "first 3 answers" in str(three.refusal)


def failed_rows(out: Path) -> int:
    """Rows marked failed in the result shards and the checkpoints of the folder."""
    shards = sorted((out / "shards" / "results").glob("*.parquet"))
    count = sum(pq.read_table(p).column("status").to_pylist().count("failed") for p in shards)
    for part in (out / "shards" / "partial").glob("*"):
        count += part.read_text().count('"failed"')
    return count


def test_refused_key_stops_the_run_in_seconds_and_the_right_key_finishes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    users = make_users(400)
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        source = write_csv(tmp_path / "users.csv", users)
        config = write_config(
            tmp_path,
            source,
            url=server.base_url,
            api={"auth": "partner-token", "key_env": "CG_TEST_KEY"},
            processing={"processes": 2, "max_workers": 8, "shard_size": 50},
        )
        monkeypatch.setenv("CG_TEST_KEY", "wr0ng-s3cret")
        started = time.monotonic()
        assert main(["run", "--config", str(config), "--no-progress"]) == 4
        assert time.monotonic() - started < 30  # seconds, not the whole table
        err = capsys.readouterr().err
        line = err.strip().splitlines()[-1]
        assert line.startswith("error: the API refused the credentials: the token endpoint ")
        assert "CG_TEST_KEY" in line and "HTTP 401: Invalid API key" in line
        assert "wr0ng-s3cret" not in err
        out = tmp_path / "out"
        assert "wr0ng-s3cret" not in (out / "pipeline.log").read_text()
        assert (out / "run.json").is_file() and failed_rows(out) == 0
        assert server.stats()["by_path"].get("/partner/cardgenius/calculate", 0) == 0

        monkeypatch.setenv("CG_TEST_KEY", "mock-key")
        assert main(["run", "--config", str(config), "--no-progress"]) == 0
    table = results(tmp_path / "out")
    assert table.num_rows == 400 and failed_rows(tmp_path / "out") == 0


def test_a_key_refused_by_the_api_itself_stops_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token comes, but every call answers 403: a fresh token does not cure it."""
    monkeypatch.setenv("CARDGENIUS_API_KEY", "mock-key")
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        server.add_rule(Rule({}, 403, '{"status": "error", "message": "Key suspended"}'))
        source = write_csv(tmp_path / "users.csv", make_users(200))
        config = write_config(tmp_path, source, url=server.base_url, api={"auth": "partner-token"})
        assert main(["run", "--config", str(config), "--no-progress"]) == 4
        assert server.stats()["calculate"] < 40  # not 200 rows' worth
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "HTTP 403: Key suspended, with a fresh token for the key in CARDGENIUS_API_KEY" in line
    assert failed_rows(tmp_path / "out") == 0


@pytest.mark.parametrize("processes", [1, 2])
def test_one_permanent_error_for_everything_stops_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], processes: int
) -> None:
    users = make_users(300)
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        source = write_csv(tmp_path / "users.csv", users)
        config = write_config(
            tmp_path,
            source,
            url=server.base_url + "/cg/api/nope",
            processing={"processes": processes, "max_workers": 4, "shard_size": 50},
        )
        assert main(["run", "--config", str(config), "--no-progress"]) == 4
        sent = server.stats()["by_path"]["/cg/api/nope"]
        assert sent <= processes * (10 + 4)  # ten alike per process, and those in flight
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith(
            f"error: the API refused the run: its first 10 answers were all {NOT_FOUND}"
        )
        assert failed_rows(tmp_path / "out") == 0

        config = write_config(tmp_path, source, url=server.base_url + "/cg/api/pro")
        assert main(["run", "--config", str(config), "--no-progress", "--fresh"]) == 0


def test_a_changed_api_stops_the_run_quoting_its_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The API's message is quoted on one line, whatever it holds.
    body = '{"success": false, "message": "unknown field\\n amazon_spends", "error_code": "X"}'
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        server.add_rule(Rule({}, 400, body))
        source = write_csv(tmp_path / "users.csv", make_users(8))  # fewer rows than ten
        config = write_config(tmp_path, source, url=server.base_url + "/cg/api/pro")
        assert main(["run", "--config", str(config), "--no-progress"]) == 4
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "were all HTTP 400: unknown field amazon_spends, and none succeeded" in line
    assert failed_rows(tmp_path / "out") == 0
