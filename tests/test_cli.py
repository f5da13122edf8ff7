"""cli.py: every command has help; usage errors exit 2 with one line; the mock command."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from pipeline.cli import main

COMMANDS = ["run", "rerun-failed", "merge", "status", "plan", "mock-api"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: pipeline {command}" in out
    assert "--config" in out


def test_top_level_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(command in out for command in COMMANDS)


def test_unknown_command_and_bad_flag_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["fly"], ["run", "--max-workers", "many"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_missing_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {tmp_path / 'nope.toml'}: config file not found (use --config PATH)"


def test_bad_limit_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[1]
    assert main(["run", "--config", str(root / "config.toml"), "--limit", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --limit 0: must be at least 1"


def test_rerun_failed_fresh_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not ignored: it would retry the failed rows of the very run it was told to discard."""
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    argv = ["rerun-failed", "--config", str(root / "config.toml"), "--out", str(out), "--fresh"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: rerun-failed --fresh: ") and "pipeline run --fresh" in err
    assert not out.exists()


def test_out_of_range_flag_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parents[1]
    assert main(["run", "--config", str(root / "config.toml"), "--max-workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --max-workers 0: must be at least 1"


def test_python_dash_m_and_mock_api_serve(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "mock-api", "--port", str(port), "--latency-ms", "0"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}" in line
        body = b'{"amazon_spends": 5000}'
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/cg/api/pro",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def interpreter_state() -> dict[str, object]:
    """What a command must not change in the process that calls `main`."""
    log = logging.getLogger("pipeline")
    return {
        "pipeline logger": (log.level, list(log.handlers), log.propagate, log.disabled),
        "root logger": (logging.root.level, list(logging.root.handlers)),
        "signals": {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)},
        "import hooks": list(sys.meta_path),
        "threads": sorted(t.name for t in threading.enumerate()),
        "switch interval": sys.getswitchinterval(),
    }


@pytest.mark.parametrize("processes", [1, 2])
def test_main_leaves_the_interpreter_as_it_found_it(tmp_path: Path, processes: int) -> None:
    from support import make_users, write_config, write_csv

    from pipeline.mockapi import MockServer, MockSettings

    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        source = write_csv(tmp_path / "users.csv", make_users(30))
        config = str(
            write_config(
                tmp_path,
                source,
                url=server.base_url + "/cg/api/pro",
                processing={"processes": processes},
            )
        )
        before = interpreter_state()
        assert main(["run", "--config", config, "-v"]) == 0
        assert main(["status", "--config", config]) == 0
        assert main(["run", "--config", str(tmp_path / "nope.toml")]) == 2
        after = interpreter_state()
    assert after == before


def test_mock_api_with_a_port_out_of_range_is_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "mock-api", "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "'99999' is not a TCP port (1-65535)" in proc.stderr.splitlines()[-1]


def test_help_and_readme_list_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    from pipeline import errors

    codes = sorted({v for k, v in vars(errors).items() if k.startswith("EXIT_")})
    assert codes == [0, 1, 2, 3, 4, 5, 130]
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "exit codes:" in out
    listed = [
        int(line.split()[0])
        for line in out.split("exit codes:")[1].splitlines()[1:]
        if line[:3].strip().isdigit()
    ]
    assert listed == codes
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for code in codes:
        assert f"\n| {code} | " in readme, code
