"""A really full disk: the output folder on a small tmpfs, filled while the run writes its
checkpoints and result shards, or before the workbook is written. (Skipped where this
machine does not let the tests mount one.)"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import make_users, unique_bodies, write_config, write_csv
from test_durability import check_workbook, wait_for
from test_faults import start

from pipeline.cli import main
from pipeline.mockapi import MockServer, MockSettings

WORKERS, PROCESSES = 8, 2


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk; returns the file to delete to free them."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        for size in (1 << 16, 1 << 12, 1):  # down to the last byte
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError:
                pass
    return filler


def setup(tmp_path: Path, disk: Path, server: MockServer) -> tuple[Path, list[dict[str, object]]]:
    users = make_users(400, seed=3)
    config = write_config(
        tmp_path,
        write_csv(tmp_path / "users.csv", users),
        url=server.base_url + "/cg/api/pro",
        processing={"processes": PROCESSES, "max_workers": WORKERS, "shard_size": 50},
        output={"dir": str(disk / "out")},
    )
    return config, users


def test_disk_full_during_the_run_exits_5_and_the_rerun_finishes(
    tmp_path: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with MockServer(MockSettings(latency_ms=50, jitter_ms=5)) as server:
        config, users = setup(tmp_path, small_disk, server)
        proc = start(config)
        wait_for(lambda: server.stats()["calculate"] >= 100)
        filler = fill(small_disk)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 5, err
        last = err.strip().splitlines()[-1]
        assert last.startswith(f"error: {small_disk / 'out'}") and "the disk is full" in last
        assert "Traceback" not in err
        capsys.readouterr()
        assert main(["status", "--config", str(config), "--json"]) == 0
        facts = json.loads(capsys.readouterr().out)
        assert sum(facts["rows_by_state"].values()) + facts["rows_checkpointed"] > 0

        filler.unlink()
        rerun = start(config)
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        # Asked again: at most the rows in flight and one unsaved batch per process.
        assert server.stats()["calculate"] - unique_bodies(users) <= WORKERS + PROCESSES * 50
        check_workbook(small_disk / "out", users)


def test_disk_full_while_writing_the_workbook_exits_5(
    tmp_path: Path, small_disk: Path, mock_server: MockServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config, users = setup(tmp_path, small_disk, mock_server)
    assert main(["run", "--config", str(config), "--no-progress", "--no-merge"]) == 0
    filler = fill(small_disk)
    capsys.readouterr()
    assert main(["merge", "--config", str(config)]) == 5
    err = capsys.readouterr().err
    workbook = small_disk / "out" / "results.xlsx"
    assert err.strip() == (
        f"error: {workbook}: the disk is full; finished rows are saved: free some space, "
        "then run the same command again"
    )
    assert not workbook.exists() and not list(workbook.parent.glob(".*.tmp"))
    filler.unlink()
    assert main(["merge", "--config", str(config)]) == 0
    check_workbook(small_disk / "out", users)
