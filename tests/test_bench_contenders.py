"""The benchmark's pipeline runs as a user's first run does: the answer store as shipped (looked
up and filled), a new one for each run, never the user's and never an earlier round's."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.mockapi import MockServer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench import data  # noqa: E402
from bench.contenders import CACHE_HOME, pipeline  # noqa: E402


def test_each_run_fills_a_new_store_of_its_own_as_shipped(
    tmp_path: Path, mock_server: MockServer, answer_store_in_a_temp_folder: Path
) -> None:
    users = data.users_file(tmp_path / "data", 40)
    contender = pipeline("pipeline", users, mock_server.base_url + "/cg/api/pro")
    for name in ("round 1", "round 2"):
        folder = tmp_path / name
        folder.mkdir()
        cmd = contender.command(folder)
        assert "[cache]" not in (folder / "config.toml").read_text(encoding="utf-8")
        done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        store = folder / CACHE_HOME / "cardgenius-pipeline" / "answers.sqlite"
        with contextlib.closing(sqlite3.connect(store)) as db:
            assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] > 0
        shards = sorted((folder / "out" / "shards" / "results").glob("*.parquet"))
        reused = [r for p in shards for r in pq.read_table(p).column("reused").to_pylist()]
        assert len(reused) == 40
        assert not any(reused)  # round 2 requested every row again
    assert not list(answer_store_in_a_temp_folder.parent.rglob("answers.sqlite"))
