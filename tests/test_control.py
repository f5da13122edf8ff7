"""`pipeline control` and `pipeline watch` on a run going in another process.

The run is a child process (`python -m pipeline run`, two worker processes) against a mock
served from this test process, so the test sees each request arrive; `control` and `watch`
are called here, as from another terminal.
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from runs import ROWS, kill_9, run_ok, setup_run, start_run, wait_for
from support import check_against_model, make_users, results, unique_bodies, write_config, write_csv

from pipeline.cli import main
from pipeline.mockapi import MockServer, MockSettings
from pipeline.ops import control
from pipeline.state.store import RunLayout
from pipeline.view.watch import look, render_status


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer(MockSettings(latency_ms=10, jitter_ms=2)) as srv:
        yield srv


def steer(tmp_path: Path, *words: str) -> None:
    assert main(["control", *words, "--out", str(tmp_path / "out")]) == 0


def calculated(server: MockServer) -> int:
    return int(server.stats()["calculate"])


def test_rate_falls_to_the_new_rate_within_two_seconds(tmp_path: Path, server: MockServer) -> None:
    config, _ = setup_run(tmp_path, server, seed=7, rate_limit=40.0)
    proc = start_run(config)
    try:
        wait_for(lambda: calculated(server) >= 40)
        steer(tmp_path, "rate", "5")  # returns once the run has taken the command
        taken = time.monotonic()
        time.sleep(2.0 + 3.0)
        arrivals = [t for t in server.stats()["arrivals"] if t >= taken + 2.0]
        assert len(arrivals) >= 10
        rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
        assert rate == pytest.approx(5.0, rel=0.1), arrivals
        status = json.loads((tmp_path / "out" / "status.json").read_text())
        assert status["facts"]["snapshot"]["rate_limit"] == 5.0
        assert "rate 5 requests/s" in status["facts"]["snapshot"]["notes"][-1]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)


def test_pause_resume_then_stop_exits_130_and_resumes(
    tmp_path: Path, server: MockServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config, users = setup_run(tmp_path, server, seed=7, rate_limit=50.0)
    proc = start_run(config)
    wait_for(lambda: calculated(server) >= 30)
    steer(tmp_path, "pause")
    time.sleep(1.0)  # requests in flight end; no new one starts
    held = calculated(server)
    time.sleep(1.0)
    assert calculated(server) == held
    status = json.loads((tmp_path / "out" / "status.json").read_text())
    assert status["facts"]["snapshot"]["held"] is True

    steer(tmp_path, "resume")
    wait_for(lambda: calculated(server) > held + 5, timeout=2.0)
    steer(tmp_path, "stop")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "to resume" in err and "Traceback" not in err
    for action, words in (("pause", "paused"), ("resume", "resumed"), ("stop", "stopping")):
        assert f"{words} (pipeline control {action})" in err
    assert calculated(server) < ROWS
    assert "took it: stopping" in capsys.readouterr().out

    run_ok(config)
    # The orderly stop saved every answer: nothing was requested twice.
    assert calculated(server) == unique_bodies(users)
    check_against_model(results(tmp_path / "out"), users, MockSettings())


def test_control_without_a_running_run_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["control", "pause", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no run is going here" in err and err.count("\n") == 1
    for words in (["rate"], ["rate", "-1"], ["rate", "fast"], ["pause", "3"]):
        assert main(["control", *words, "--out", str(tmp_path)]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "control").exists()


def test_watch_shows_a_running_run_and_says_when_it_was_killed(
    tmp_path: Path, server: MockServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup_run(tmp_path, server, seed=7, rate_limit=40.0)
    layout = RunLayout(tmp_path / "out")
    proc = start_run(config)
    wait_for(lambda: calculated(server) >= 60)
    time.sleep(1.2)  # the status file is rewritten every second
    screen = Console(file=io.StringIO(), width=100, record=True, color_system=None)
    seen = look(layout)
    screen.print(render_status(layout, seen, 100, time.time()))
    text = screen.export_text()
    done = seen.record["facts"]["done"] if seen.record else 0
    assert done >= 40
    assert f"Watching the run in {layout.root} (pid {proc.pid})" in text
    assert f"{done:,}/{ROWS:,} users" in text
    assert "requests/s" in text and "of 40 limit" in text

    kill_9(proc)
    assert main(["watch", "--out", str(layout.root)]) == 0
    out = capsys.readouterr().out
    assert f"/{ROWS} users processed" in out
    assert "is not running: it was killed or crashed" in out


def test_watch_follows_a_run_to_its_end(
    tmp_path: Path, server: MockServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config, _ = setup_run(tmp_path, server, seed=7, rate_limit=100.0)
    proc = start_run(config)
    wait_for(lambda: (tmp_path / "out" / "status.json").exists())
    assert main(["watch", "--config", str(config)]) == 0  # returns when the run ends
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith("Watching the run in") for line in out), out
    assert out[-2].startswith(f"Progress: {ROWS}/{ROWS} users processed (100.0%)"), out
    assert "is not running: it finished with exit code 0" in out[-1]


def test_a_command_left_by_a_dead_run_is_not_applied_and_exit_2_leaves_the_status(
    tmp_path: Path,
) -> None:
    layout = RunLayout(tmp_path / "out")
    from pipeline.state.channel import post_command

    post_command(layout, control.command("stop"))
    users = make_users(20)
    config = write_config(tmp_path, write_csv(tmp_path / "users.csv", users))
    assert main(["run", "--config", str(config), "--no-progress", "--no-merge"]) == 0
    assert not list(layout.control_dir.glob("*.json"))
    status = layout.status_file.read_bytes()
    assert json.loads(status)["state"] == "finished"
    write_csv(tmp_path / "users.csv", make_users(21))  # another input: refused, exit 2
    assert main(["run", "--config", str(config), "--no-progress"]) == 2
    assert layout.status_file.read_bytes() == status  # as the last run left it


def test_a_folder_the_command_cannot_be_left_in_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layout = RunLayout(tmp_path)
    layout.lock_file.write_text(f"pid {os.getpid()}\n")  # a run going: this process
    layout.control_dir.write_text("")  # not a folder: no command can be left in it
    assert main(["control", "pause", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "cannot leave the command there" in err and err.count("\n") == 1
