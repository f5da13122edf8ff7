"""A disk that takes no more bytes, while the run writes its checkpoints and result shards, or
before the workbook is written. Two ways, the same scenarios:

- `tmpfs`: the output folder on a small tmpfs, really filled (ENOSPC). Skipped where this
  machine does not let the tests mount one (CI machines, containers).
- `fsize`: runs everywhere. The run's processes may not write files past a few KB
  (`RLIMIT_FSIZE`, as `ulimit -f` sets it), so a write fails with EFBIG, as a write to a full
  disk fails with ENOSPC. SIGXFSZ is ignored, as Python itself does at start: a write past
  the limit fails instead of killing the process. The limit covers every file the run writes,
  the answer store kept across runs included, so the line may name any of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from runs import PROCESSES, WORKERS, check_workbook, wait_for
from support import make_users, unique_bodies, write_config, write_csv

from pipeline.cli import main
from pipeline.errors import TOO_LARGE, TOO_LARGE_TODO
from pipeline.mockapi import MockServer, MockSettings

LIMIT = 4096
"""Bytes a process may write to a file under `fsize`: a lock file's line, not a shard."""


class Fault:
    """Writes to the run's files fail, then succeed again after `free()`."""

    root: Path
    """Where the output folder goes."""
    what: str
    """What the error line says the trouble is."""
    todo: str
    """What it says to do."""

    def fill(self, pid: int | None = None) -> None:
        """From now on writes fail: the disk's, or those of process `pid` and its children."""
        raise NotImplementedError

    def child_setup(self) -> Callable[[], None] | None:
        """What a command started now runs first in its process (None: nothing)."""
        return None

    def free(self) -> None:
        raise NotImplementedError


class SmallDisk(Fault):
    what, todo = "the disk is full", "free some space"

    def __init__(self, root: Path) -> None:
        self.root = root

    def fill(self, pid: int | None = None) -> None:
        """Take every free byte of the disk."""
        self.filler = self.root / "filler"
        with open(self.filler, "wb", buffering=0) as handle:
            for size in (1 << 16, 1 << 12, 1):  # down to the last byte
                try:
                    while True:
                        handle.write(b"\0" * size)
                except OSError:
                    pass

    def free(self) -> None:
        self.filler.unlink()


class SizeLimit(Fault):
    what, todo = TOO_LARGE, TOO_LARGE_TODO

    def __init__(self, root: Path) -> None:
        self.root = root
        self.full = False

    def fill(self, pid: int | None = None) -> None:
        self.full = True
        for each in [] if pid is None else family(pid):
            with contextlib.suppress(ProcessLookupError):  # ended meanwhile
                resource.prlimit(each, resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))

    def child_setup(self) -> Callable[[], None] | None:
        return _limit_file_size if self.full else None

    def free(self) -> None:
        self.full = False  # the limit goes with the processes that had it


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))


def family(pid: int) -> list[int]:
    """`pid` and its descendants: the coordinator and its worker processes."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        children = []  # it has ended
    return [pid, *(p for child in children for p in family(int(child)))]


@pytest.fixture(params=["tmpfs", "fsize"])
def fault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fault]:
    disk = tmp_path / "disk"
    disk.mkdir()
    if request.param == "fsize":
        yield SizeLimit(disk)
        return
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (the fsize case runs instead)")
    try:
        yield SmallDisk(disk)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def command(fault: Fault, config: Path, *args: str) -> subprocess.Popen[str]:
    """A `pipeline` command in a child process (in a process group of its own)."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", *args, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=fault.child_setup(),
    )


def setup(tmp_path: Path, fault: Fault, server: MockServer) -> tuple[Path, list[dict[str, object]]]:
    users = make_users(400, seed=3)
    config = write_config(
        tmp_path,
        write_csv(tmp_path / "users.csv", users),
        url=server.base_url + "/cg/api/pro",
        processing={"processes": PROCESSES, "max_workers": WORKERS, "shard_size": 50},
        output={"dir": str(fault.root / "out")},
        cache={"path": str(tmp_path / "cache")},
    )
    return config, users


def test_disk_full_during_the_run_exits_5_and_the_rerun_finishes(
    tmp_path: Path, fault: Fault, capsys: pytest.CaptureFixture[str]
) -> None:
    with MockServer(MockSettings(latency_ms=50, jitter_ms=5)) as server:
        config, users = setup(tmp_path, fault, server)
        proc = command(fault, config, "run", "--no-progress")
        wait_for(lambda: server.stats()["calculate"] >= 100)
        fault.fill(proc.pid)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 5, err
        assert "Traceback" not in err
        last = err.strip().splitlines()[-1]
        # The line names the file: of the run folder (or, under a size limit that holds for
        # every file, the answer store kept across runs).
        named = fault.root / "out" if isinstance(fault, SmallDisk) else tmp_path
        assert last.startswith(f"error: {named}/"), last
        assert fault.what in last and f"{fault.todo}, then run the same command again" in last
        capsys.readouterr()
        assert main(["status", "--config", str(config), "--json"]) == 0
        facts = json.loads(capsys.readouterr().out)
        assert sum(facts["rows_by_state"].values()) + facts["rows_checkpointed"] > 0

        fault.free()
        rerun = command(fault, config, "run", "--no-progress")
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        # Asked again: at most the rows in flight and one unsaved batch per process.
        assert server.stats()["calculate"] - unique_bodies(users) <= WORKERS + PROCESSES * 50
        check_workbook(fault.root / "out", users)


def test_disk_full_while_writing_the_workbook_exits_5(
    tmp_path: Path, fault: Fault, mock_server: MockServer
) -> None:
    config, users = setup(tmp_path, fault, mock_server)
    assert main(["run", "--config", str(config), "--no-progress", "--no-merge"]) == 0
    fault.fill()
    merge = command(fault, config, "merge")
    _, err = merge.communicate(timeout=120)
    workbook = fault.root / "out" / "results.xlsx"
    assert merge.returncode == 5, err
    assert err.strip() == (
        f"error: {workbook}: {fault.what}; finished rows are saved: {fault.todo}, "
        "then run the same command again"
    )
    assert not workbook.exists() and not list(workbook.parent.glob(".*.tmp"))
    fault.free()
    merge = command(fault, config, "merge")
    _, err = merge.communicate(timeout=120)
    assert merge.returncode == 0, err
    check_workbook(fault.root / "out", users)
    assert os.path.getsize(workbook) > LIMIT  # the limit was below what the merge writes
