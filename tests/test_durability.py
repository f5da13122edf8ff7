"""Durability with real processes and real signals: kill -9, Ctrl+C, SIGTERM, two runs.

The pipeline runs as a child process (`python -m pipeline run`) against a mock served from
this test process, so the test sees every request the pipeline sends, before and after a kill.
"""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import pytest
from runs import (
    PROCESSES,
    WORKERS,
    check_workbook,
    kill_9,
    quiet_within,
    run_ok,
    setup_run,
    start_run,
    wait_for,
)
from support import check_against_model, make_users, results, unique_bodies, write_config, write_csv

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.mockapi import MockServer, MockSettings
from pipeline.run.pool import ShardPool
from pipeline.state.store import RunLayout


@pytest.mark.parametrize("kill_after", [0, 130, 290])
def test_kill_9_then_resume_loses_nothing_and_repeats_little(
    tmp_path: Path, slow_server: MockServer, kill_after: int, capsys: pytest.CaptureFixture[str]
) -> None:
    server = slow_server
    config, users = setup_run(tmp_path, server)
    proc = start_run(config)
    if kill_after == 0:  # before any request: during start-up or sharding
        wait_for(lambda: (tmp_path / "out" / "run.json").exists())
    else:
        wait_for(lambda: server.stats()["calculate"] >= kill_after)
    kill_9(proc)
    # Orphaned workers notice the dead coordinator and stop within 2 seconds.
    assert quiet_within(server, 2.0) == 0
    before = server.stats()["calculate"]
    # status reads the killed run's folder: nothing is lost, the next run resumes.
    assert main(["status", "--config", str(config), "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    if kill_after:
        done = sum(facts["rows_by_state"].values()) + facts["rows_checkpointed"]
        assert done >= kill_after - WORKERS - PROCESSES * 50
    if facts.get("shards", {}).get("pending"):
        assert facts["next"].startswith("pipeline run resumes")

    run_ok(config)
    total = server.stats()["calculate"]
    # Requested twice: at most the in-flight requests plus one checkpoint batch per process.
    assert total - unique_bodies(users) <= WORKERS + PROCESSES * 50, (before, total)
    check_against_model(results(tmp_path / "out"), users, MockSettings())
    check_workbook(tmp_path / "out", users)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_exits_130_and_resume_completes(
    tmp_path: Path, slow_server: MockServer, signum: signal.Signals
) -> None:
    server = slow_server
    config, users = setup_run(tmp_path, server)
    proc = start_run(config)
    wait_for(lambda: server.stats()["calculate"] >= 150)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "to resume" in err
    assert "Traceback" not in err
    assert quiet_within(server, 0.0) == 0
    partial = list((tmp_path / "out" / "shards" / "partial").glob("*.jsonl"))
    assert partial or len(list((tmp_path / "out" / "shards" / "results").glob("*"))) > 0

    run_ok(config)
    # An orderly stop lets in-flight requests finish and saves them: nothing is asked twice.
    assert server.stats()["calculate"] == unique_bodies(users)
    check_against_model(results(tmp_path / "out"), users, MockSettings())
    check_workbook(tmp_path / "out", users)


def test_second_run_on_the_same_folder_is_refused(tmp_path: Path, slow_server: MockServer) -> None:
    server = slow_server
    config, _ = setup_run(tmp_path, server)
    first = start_run(config)
    wait_for(lambda: server.stats()["calculate"] >= 20)
    second = start_run(config)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert "is in use by a run that is still going" in err
    assert err.count("\n") == 1
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err


def test_lock_of_a_killed_run_does_not_hold(tmp_path: Path, slow_server: MockServer) -> None:
    server = slow_server
    config, users = setup_run(tmp_path, server)
    proc = start_run(config)
    wait_for(lambda: server.stats()["calculate"] >= 20)
    kill_9(proc)
    run_ok(config)
    check_workbook(tmp_path / "out", users)


def test_stop_can_be_set_after_the_workers_have_exited(tmp_path: Path) -> None:
    """The workers watch the run's shared stop event; once they have exited (a closed pool,
    a killed worker), setting it must not wait for them. (A worker thread asleep in the
    event's `wait()` counts as a sleeper that `set()` waits to see wake: forever.)"""
    config = load_config(write_config(tmp_path, write_csv(tmp_path / "u.csv", make_users(4))))
    pool = ShardPool(config, RunLayout(config.output.dir))
    pool.group.join()
    setter = threading.Thread(target=pool.stop.set, daemon=True)
    setter.start()
    setter.join(timeout=10)
    assert not setter.is_alive(), "stop.set() blocked on workers that have exited"
    assert pool.stop.is_set()
