"""Helpers the tests of real runs share: `pipeline run` started as a child process, waited
for, killed or rerun; a run folder set up against a mock; what the mock and the run folder
show afterwards (requests still arriving, the workbook, the worker processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import openpyxl
from support import make_users, write_config, write_csv

from pipeline.mockapi import MockServer

ROWS = 400
SHARD = 50
WORKERS = 8
PROCESSES = 2


def start_pipeline(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m pipeline *args` in a process group of its own, as systemd or docker would
    start it; `env` is added to this process's environment."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def start_run(
    config: Path, *extra: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """`pipeline run` as from another terminal (plain progress lines), in its own process
    group: a signal to the group reaches the run and its workers, none other."""
    return start_pipeline("run", "--config", str(config), "--no-progress", *extra, env=env)


def run_ok(config: Path, *extra: str) -> None:
    """`pipeline run` as a child process, to its end: exit 0."""
    proc = start_run(config, *extra)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err


def run_fails(config: Path, code: int, env: Mapping[str, str]) -> str:
    """`pipeline run` with `env` (a fault) to its end: exit `code`, no traceback. Returns the
    last line it writes to stderr: the one line that says why."""
    proc = start_run(config, env=env)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    return err.splitlines()[-1]


def kill_9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)  # reaps it and closes the pipes


def wait_for(check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def setup_run(
    tmp_path: Path, server: MockServer, seed: int = 3, **processing: object
) -> tuple[Path, list[dict[str, object]]]:
    """ROWS users and a config sending them to `server`: PROCESSES processes of WORKERS
    threads, shards of SHARD rows, the output in tmp_path / "out"; `processing`, more
    settings of its [processing] table."""
    users = make_users(ROWS, seed=seed)
    source = write_csv(tmp_path / "users.csv", users)
    config = write_config(
        tmp_path,
        source,
        url=server.base_url + "/cg/api/pro",
        processing={
            "processes": PROCESSES,
            "max_workers": WORKERS,
            "shard_size": SHARD,
            **processing,
        },
    )
    return config, users


def quiet_within(server: MockServer, seconds: float) -> int:
    """Requests the server gets after `seconds` have passed; 0 when it has gone quiet."""
    time.sleep(seconds)
    settled = int(server.stats()["calculate"])
    time.sleep(1.0)
    return int(server.stats()["calculate"]) - settled


def check_workbook(out: Path, users: list[dict[str, object]]) -> None:
    book = openpyxl.load_workbook(out / "results.xlsx", read_only=True)
    ids = [row[0] for row in book["Results"].iter_rows(min_row=2, values_only=True)]
    book.close()
    assert ids == [u["user_id"] for u in users]  # every user exactly once, in input order


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
