"""Faults an operator meets, with real processes and real signals: a worker killed, a shard that
kills its worker again and again, SIGTERM to the whole process group.

The pipeline runs as a child process against a mock served from this test process, so the test
sees every request it sends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from support import check_against_model, results, unique_bodies
from test_durability import WORKERS, check_workbook, quiet_within, wait_for
from test_durability import setup_run as setup

from pipeline.mockapi import MockServer, MockSettings
from pipeline.run.worker import DIES_ON_ENV, MEMORY_ENV


def start(config: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`pipeline run` in a process group of its own, as systemd or docker would start it."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", "--config", str(config), "--no-progress", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def worker_pids(pid: int) -> list[int]:
    """The worker processes among `pid`'s children (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    found = []
    for child in map(int, children):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
            found.append(child)
    return found


def test_sigterm_to_the_process_group_is_an_orderly_stop(
    tmp_path: Path, slow_server: MockServer
) -> None:
    server = slow_server
    config, users = setup(tmp_path, server)
    proc = start(config)
    wait_for(lambda: server.stats()["calculate"] >= 150)
    os.killpg(proc.pid, signal.SIGTERM)  # systemd, `docker stop`, `timeout`
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "BrokenProcessPool" not in err
    assert quiet_within(server, 0.0) == 0

    rerun = start(config)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    # In-flight requests ended and were saved: nothing is asked twice.
    assert server.stats()["calculate"] == unique_bodies(users)
    check_against_model(results(tmp_path / "out"), users, MockSettings())


def test_a_killed_worker_is_replaced_and_its_shard_resumed(
    tmp_path: Path, slow_server: MockServer
) -> None:
    server = slow_server
    config, users = setup(tmp_path, server)
    proc = start(config)
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
    config, users = setup(tmp_path, server)
    proc = start(config, env={DIES_ON_ENV: "shard-00003.parquet"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err
    assert "shard-00003.parquet" in err.splitlines()[-1]
    assert "Traceback" not in err
    # The other shards finished; the rerun (without the fault) does only the rest.
    finished = {p.name for p in (tmp_path / "out" / "shards" / "results").iterdir()}
    assert "shard-00003.parquet" not in finished and len(finished) >= 2
    rerun = start(config)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert server.stats()["calculate"] == unique_bodies(users)
    check_workbook(tmp_path / "out", users)


def test_a_worker_out_of_memory_stops_the_run_in_order_with_exit_5(
    tmp_path: Path, slow_server: MockServer
) -> None:
    """The process given shard 1 (its first: it builds its threads and reads the shard) may
    take no more memory: one line naming the shard, exit 5, no traceback, no hang; the other
    process's rows are saved, and the rerun asks only what was not."""
    server = slow_server
    config, users = setup(tmp_path, server)
    proc = start(config, env={MEMORY_ENV: "shard-00001.parquet"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: shard shard-00001.parquet: a worker process ran out of memory")
    assert "Traceback" not in err
    rerun = start(config)
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    # Asked again: at most the rows in flight and one unsaved batch per process.
    assert server.stats()["calculate"] - unique_bodies(users) <= WORKERS + 2 * 50
    check_workbook(tmp_path / "out", users)


def test_nothing_to_do_and_an_early_ctrl_c_are_quiet(
    tmp_path: Path, slow_server: MockServer
) -> None:
    server = slow_server
    config, _ = setup(tmp_path, server)
    first = start(config)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    # A run of a finished folder: the workers are still starting when it ends.
    again = start(config)
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert "Traceback" not in err and "Nothing to request" in err

    # Ctrl+C reaches every process of the group while the workers import their modules.
    early = start(config, "--out", str(tmp_path / "early"))
    wait_for(lambda: (tmp_path / "early" / "run.json").exists())
    os.killpg(early.pid, signal.SIGINT)
    _, err = early.communicate(timeout=60)
    assert early.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_workers_that_die_as_they_start_stop_the_run_with_exit_5(
    tmp_path: Path, slow_server: MockServer
) -> None:
    config, _ = setup(tmp_path, slow_server)
    proc = start(config, env={DIES_ON_ENV: "start"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, err
    assert "worker processes exit as they start (killed by SIGKILL)" in err.splitlines()[-1]
    assert "Traceback" not in err
