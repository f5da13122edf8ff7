"""Faults an operator meets, with real processes and real signals: a worker killed, a shard that
kills its worker again and again, SIGTERM to the whole process group.

The pipeline runs as a child process against a mock served from this test process, so the test
sees every request it sends.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from runs import (
    WORKERS,
    check_workbook,
    quiet_within,
    run_fails,
    run_ok,
    setup_run,
    start_run,
    wait_for,
    worker_pids,
)
from support import check_against_model, results, unique_bodies

from pipeline.mockapi import MockServer, MockSettings
from pipeline.run.worker import DIES_ON_ENV, MEMORY_ENV


def test_sigterm_to_the_process_group_is_an_orderly_stop(
    tmp_path: Path, slow_server: MockServer
) -> None:
    server = slow_server
    config, users = setup_run(tmp_path, server)
    proc = start_run(config)
    wait_for(lambda: server.stats()["calculate"] >= 150)
    os.killpg(proc.pid, signal.SIGTERM)  # systemd, `docker stop`, `timeout`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "BrokenProcessPool" not in err
    assert quiet_within(server, 0.0) == 0

    run_ok(config)
    # In-flight requests ended and were saved: nothing is asked twice.
    assert server.stats()["calculate"] == unique_bodies(users)
    check_against_model(results(tmp_path / "out"), users, MockSettings())


def test_a_killed_worker_is_replaced_and_its_shard_resumed(
    tmp_path: Path, slow_server: MockServer
) -> None:
    server = slow_server
    config, users = setup_run(tmp_path, server)
    proc = start_run(config)
    wait_for(lambda: server.stats()["calculate"] >= 100)
    victim = worker_pids(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)  # the OOM killer
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "A worker process died (killed by SIGKILL)" in err
    assert "Traceback" not in err
    # Asked twice: at most that worker's in-flight requests and one checkpoint batch.
    assert server.stats()["calculate"] - unique_bodies(users) <= WORKERS + 50
    check_against_model(results(tmp_path / "out"), users, MockSettings())
    check_workbook(tmp_path / "out", users)


def test_a_shard_that_keeps_killing_its_worker_stops_the_run_with_exit_5(
    tmp_path: Path, slow_server: MockServer
) -> None:
    server = slow_server
    config, users = setup_run(tmp_path, server)
    last = run_fails(config, 5, env={DIES_ON_ENV: "shard-00003.parquet"})
    assert "shard-00003.parquet" in last
    # The other shards finished; the rerun (without the fault) does only the rest.
    finished = {p.name for p in (tmp_path / "out" / "shards" / "results").iterdir()}
    assert "shard-00003.parquet" not in finished and len(finished) >= 2
    run_ok(config)
    assert server.stats()["calculate"] == unique_bodies(users)
    check_workbook(tmp_path / "out", users)


def test_a_worker_out_of_memory_stops_the_run_in_order_with_exit_5(
    tmp_path: Path, slow_server: MockServer
) -> None:
    """The process given shard 1 (its first: it builds its threads and reads the shard) may
    take no more memory: one line naming the shard, exit 5, no traceback, no hang; the other
    process's rows are saved, and the rerun asks only what was not."""
    server = slow_server
    config, users = setup_run(tmp_path, server)
    last = run_fails(config, 5, env={MEMORY_ENV: "shard-00001.parquet"})
    assert last.startswith("error: shard shard-00001.parquet: a worker process ran out of memory")
    run_ok(config)
    # Asked again: at most the rows in flight and one unsaved batch per process.
    assert server.stats()["calculate"] - unique_bodies(users) <= WORKERS + 2 * 50
    check_workbook(tmp_path / "out", users)


def test_nothing_to_do_and_an_early_ctrl_c_are_quiet(
    tmp_path: Path, slow_server: MockServer
) -> None:
    server = slow_server
    config, _ = setup_run(tmp_path, server)
    run_ok(config)
    # A run of a finished folder: the workers are still starting when it ends.
    again = start_run(config)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "Traceback" not in err and "Nothing to request" in err

    # Ctrl+C reaches every process of the group while the workers import their modules.
    early = start_run(config, "--out", str(tmp_path / "early"))
    wait_for(lambda: (tmp_path / "early" / "run.json").exists())
    os.killpg(early.pid, signal.SIGINT)
    _, err = early.communicate(timeout=60)
    assert early.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_workers_that_die_as_they_start_stop_the_run_with_exit_5(
    tmp_path: Path, slow_server: MockServer
) -> None:
    config, _ = setup_run(tmp_path, slow_server)
    last = run_fails(config, 5, env={DIES_ON_ENV: "start"})
    assert "worker processes exit as they start (killed by SIGKILL)" in last
