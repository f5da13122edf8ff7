"""The run folder under an operator's hands: deleted under a run, damaged, left half-written by a
kill during the merge, resumed with other settings, or with more than 99,999 shards."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest
from runs import check_workbook, setup_run, start_pipeline, start_run, wait_for
from support import make_users, unique_bodies, write_config, write_csv

from pipeline.cli import main
from pipeline.mockapi import MockServer, MockSettings, Rule
from pipeline.state.store import RunLayout


def finished_run(tmp_path: Path, server: MockServer, rows: int = 60, *extra: str) -> Path:
    users = make_users(rows, seed=5)
    config = write_config(
        tmp_path, write_csv(tmp_path / "users.csv", users), url=server.base_url + "/cg/api/pro"
    )
    assert main(["run", "--config", str(config), "--no-progress", *extra]) == 0
    return config


def test_rerun_failed_where_there_is_no_run_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, write_csv(tmp_path / "u.csv", make_users(4)))
    out = tmp_path / "nothing-here"
    assert main(["rerun-failed", "--config", str(config), "--out", str(out)]) == 2
    assert "no run to retry here" in capsys.readouterr().err
    assert not out.exists()


def test_the_lock_holds_when_the_folder_is_deleted_under_a_run(
    tmp_path: Path, slow_server: MockServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config, users = setup_run(tmp_path, slow_server)
    first = start_run(config)
    wait_for(lambda: slow_server.stats()["calculate"] >= 50)
    (tmp_path / "out").rename(tmp_path / "trash")  # as `rm -rf out` sees it, in one step
    shutil.rmtree(tmp_path / "trash", ignore_errors=True)
    # status and a second run see the first one, though its folder is gone.
    assert main(["status", "--config", str(config)]) == 0
    assert f"a run is in progress (pid {first.pid})" in capsys.readouterr().out
    assert main(["run", "--config", str(config), "--no-progress"]) == 2
    assert f"in use by a run that is still going (pid {first.pid})" in capsys.readouterr().err
    # The first run stops: its folder has gone.
    _, err = first.communicate(timeout=60)
    assert first.returncode == 5, err
    assert "deleted or replaced" in err.splitlines()[-1] and "Traceback" not in err
    assert main(["run", "--config", str(config), "--no-progress"]) == 0
    check_workbook(tmp_path / "out", users)


def test_leftover_temporary_files_are_removed_by_the_next_command(
    tmp_path: Path, mock_server: MockServer
) -> None:
    config = finished_run(tmp_path, mock_server)
    out = tmp_path / "out"
    leftovers = [out / ".results.xlsx.k1ll3d.tmp", out / "shards" / "results" / ".x.parquet.a.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    assert main(["merge", "--config", str(config)]) == 0
    assert not any(path.exists() for path in leftovers)
    leftovers[0].write_bytes(b"half a file")
    assert main(["run", "--config", str(config), "--no-progress"]) == 0
    assert not leftovers[0].exists()


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT])
def test_a_kill_or_ctrl_c_during_the_workbook_write_leaves_the_old_one(
    tmp_path: Path, mock_server: MockServer, signum: signal.Signals
) -> None:
    config = finished_run(tmp_path, mock_server, 3000)
    out = tmp_path / "out"
    old = (out / "results.xlsx").read_bytes()
    for _ in range(5):  # until the signal lands while the workbook is being written
        proc = start_pipeline("merge", "--config", str(config))
        wait_for(lambda p=proc: bool(list(out.glob(".results.xlsx.*.tmp"))) or p.poll() is not None)
        os.killpg(proc.pid, signum)
        _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            break
    assert proc.returncode == (130 if signum == signal.SIGINT else -9), err
    assert (out / "results.xlsx").read_bytes() == old  # the old workbook, whole
    if signum == signal.SIGINT:
        assert "Traceback" not in err
        assert not list(out.glob(".results.xlsx.*.tmp"))
    assert main(["merge", "--config", str(config)]) == 0
    assert not list(out.glob(".*.tmp"))
    openpyxl.load_workbook(out / "results.xlsx", read_only=True).close()


def test_ctrl_c_during_the_runs_workbook_write_exits_130(
    tmp_path: Path, mock_server: MockServer
) -> None:
    users = make_users(3000, seed=5)
    config = write_config(
        tmp_path, write_csv(tmp_path / "u.csv", users), url=mock_server.base_url + "/cg/api/pro"
    )
    out = tmp_path / "out"
    proc = start_run(config)
    wait_for(lambda: bool(list(out.glob(".results.xlsx.*.tmp"))) or proc.poll() is not None)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (out / "results.xlsx").exists() and not list(out.glob(".*.tmp"))
    assert main(["run", "--config", str(config), "--no-progress"]) == 0
    assert (out / "results.xlsx").exists()


def test_damaged_run_json_and_answer_store_are_one_line_each(
    tmp_path: Path, mock_server: MockServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = finished_run(tmp_path, mock_server)
    out = tmp_path / "out"
    run_json = (out / "run.json").read_text()
    (out / "run.json").write_text(run_json[: len(run_json) // 2])
    capsys.readouterr()
    for command in ("run", "status", "merge"):
        assert main([command, "--config", str(config)]) == 5
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{out / 'run.json'}: damaged" in err
        assert "--fresh" in err
    (out / "run.json").write_text(run_json)

    (out / "answers.sqlite").write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        (out / f"answers.sqlite{suffix}").unlink(missing_ok=True)
    shutil.rmtree(out / "shards" / "results")  # so that the run has shards to request
    assert main(["run", "--config", str(config), "--no-progress"]) == 5
    err = capsys.readouterr().err
    assert f"{out / 'answers.sqlite'}: it is damaged; delete it" in err.splitlines()[-1]
    assert "Traceback" not in err
    (out / "answers.sqlite").unlink()
    assert main(["run", "--config", str(config), "--no-progress"]) == 0


def test_a_truncated_result_shard_is_redone(
    tmp_path: Path, mock_server: MockServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = finished_run(tmp_path, mock_server)
    shard = tmp_path / "out" / "shards" / "results" / "shard-00001.parquet"
    rows = pq.ParquetFile(shard).metadata.num_rows
    shard.write_bytes(shard.read_bytes()[:-100])
    mock_server.reset_stats()
    capsys.readouterr()
    assert main(["run", "--config", str(config), "--no-progress"]) == 0
    assert "Result shard shard-00001.parquet was damaged" in capsys.readouterr().err
    # That shard's rows at most (the answer store may hold them all), no others.
    assert mock_server.stats()["calculate"] <= rows
    assert pq.ParquetFile(shard).metadata.num_rows == rows
    check_workbook(tmp_path / "out", make_users(60, seed=5))


def test_a_leftover_checkpoint_never_masks_failed_rows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = make_users(40)
    users[7]["amazon"] = 4242  # always refused
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        server.add_rule(Rule(match={"amazon_spends": 4242}, status=400, body="{}"))
        config = write_config(
            tmp_path, write_csv(tmp_path / "u.csv", users), url=server.base_url + "/cg/api/pro"
        )
        assert main(["run", "--config", str(config), "--no-progress"]) == 1
        # A kill between writing the result shard and removing its checkpoint leaves both.
        layout = RunLayout(tmp_path / "out")
        name = layout.shard_name(0)
        rows = pq.read_table(layout.result_shard(name)).to_pylist()
        checkpoint = layout.checkpoint(name)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_text("".join(json.dumps(r) + "\n" for r in rows))
        past = layout.result_shard(name).stat().st_mtime - 5
        os.utime(checkpoint, (past, past))
        capsys.readouterr()
        assert main(["status", "--config", str(config), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["rows_by_state"]["failed"] == 1
        server.reset_stats()
        assert main(["rerun-failed", "--config", str(config), "--no-progress"]) == 1
        assert server.stats()["calculate"] == 1  # the failed row was asked again
        assert not checkpoint.exists()


def test_shards_past_99999_keep_input_order(tmp_path: Path, mock_server: MockServer) -> None:
    config = finished_run(tmp_path, mock_server, 48, "--no-merge")
    layout = RunLayout(tmp_path / "out")
    names = layout.input_shards()
    assert len(names) == 3
    for old, index in zip(names, (99_999, 100_000, 100_001), strict=True):
        for folder in (layout.input_dir, layout.results_dir):
            (folder / old).rename(folder / layout.shard_name(index))
    assert layout.result_shards() == [
        "shard-99999.parquet",
        "shard-100000.parquet",
        "shard-100001.parquet",
    ]
    assert main(["merge", "--config", str(config)]) == 0
    check_workbook(tmp_path / "out", make_users(48, seed=5))


def test_a_resume_tells_the_truth(
    tmp_path: Path, slow_server: MockServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config, users = setup_run(tmp_path, slow_server)
    out = tmp_path / "out"
    proc = start_run(config)
    wait_for(lambda: slow_server.stats()["calculate"] >= 100)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    # Another shard size: said, and the run's own kept; the settings in force recorded.
    args = ["run", "--config", str(config), "--no-progress", "--shard-size", "7"]
    assert main([*args, "--max-workers", "3"]) == 0
    assert "Shard size 7 is ignored: this run was sharded by 50 rows" in capsys.readouterr().err
    info = json.loads((out / "run.json").read_text())
    assert info["settings"]["processing"]["max_workers"] == 3
    assert info["settings"]["processing"]["shard_size"] == 50
    book = openpyxl.load_workbook(out / "results.xlsx")
    summary = {row[0]: row[1] for row in book["Summary"].iter_rows(values_only=True) if row[1:]}
    assert summary["processing.max_workers"] == 3
    # A run with nothing to do does not move the finish time.
    assert main(["run", "--config", str(config), "--no-progress"]) == 0
    assert json.loads((out / "run.json").read_text())["finished_at"] == info["finished_at"]
    assert slow_server.stats()["calculate"] == unique_bodies(users)

    # An interrupted --fresh leaves no workbook of the discarded run.
    fresh = start_run(config, "--fresh")
    wait_for(lambda: not (out / "results.xlsx").exists() or fresh.poll() is not None)
    fresh.send_signal(signal.SIGINT)
    fresh.communicate(timeout=60)
    if fresh.returncode == 130:
        assert not (out / "results.xlsx").exists()
    assert main(["run", "--config", str(config), "--no-progress"]) == 0


def test_an_interrupt_that_a_library_swallowed_still_stops_the_write(tmp_path: Path) -> None:
    from pipeline import interrupts
    from pipeline.state.store import write_json_atomic

    target = tmp_path / "run.json"
    target.write_text('{"old": true}')
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        interrupts.install()
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())  # delivered here, at the latest
        except KeyboardInterrupt:
            pass  # what a library's own signal check may do
        with pytest.raises(KeyboardInterrupt):
            write_json_atomic(target, {"new": True})
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        interrupts.reset()
    assert target.read_text() == '{"old": true}'
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_lock_answers_many_status_calls_and_frees_on_release(tmp_path: Path) -> None:
    from pipeline.errors import RunStateError
    from pipeline.state.lock import RunLock, holder

    layout = RunLayout(tmp_path / "out")
    lock = RunLock(layout)
    lock.acquire()
    assert {holder(layout) for _ in range(50)} == {os.getpid()}  # never a full queue
    with pytest.raises(RunStateError, match=f"pid {os.getpid()}"):
        RunLock(layout).acquire()
    lock.release()
    assert holder(layout) is None
    again = RunLock(layout)
    again.acquire()
    again.release()
