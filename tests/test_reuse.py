"""The answer store kept across runs, end to end: real runs against the mock on a real port,
each into a new folder, the store in the test's own temporary folder (conftest.py). The mock
counts what arrives, so each test says exactly which bodies were sent."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from runs import PROCESSES, WORKERS, kill_9, quiet_within, run_ok, setup_run, start_run, wait_for
from support import (
    body_of,
    check_against_model,
    make_users,
    results,
    unique_bodies,
    write_config,
    write_csv,
)

from pipeline.cli import main
from pipeline.mockapi import MockServer, MockSettings


def run_into(
    tmp_path: Path, name: str, users: list[dict[str, Any]], url: str, *flags: str, **tables: Any
) -> int:
    source = write_csv(tmp_path / f"{name}.csv", users)
    tables.setdefault("output", {})["dir"] = str(tmp_path / name)
    config = write_config(tmp_path, source, url=url, **tables)
    return main(["run", "--config", str(config), "--no-progress", *flags])


def test_a_second_run_reuses_every_answer_and_says_so(tmp_path: Path) -> None:
    users = make_users(80, seed=3)
    with MockServer(MockSettings(latency_ms=1, jitter_ms=0)) as server:
        url = server.base_url + "/cg/api/pro"
        assert run_into(tmp_path, "first", users, url) == 0
        assert server.stats()["calculate"] == unique_bodies(users)
        server.reset_stats()
        assert run_into(tmp_path, "second", users, url) == 0
        assert server.stats()["calculate"] == 0
    first, second = results(tmp_path / "first"), results(tmp_path / "second")
    check_against_model(second, users, MockSettings())
    for old, new in zip(first.to_pylist(), second.to_pylist(), strict=True):
        assert new["reused"] is True and new["attempts"] == 0
        assert new["answered_at"] == old["answered_at"]
    # In the first run, only twins of bodies answered in an earlier shard came from the store.
    assert sum(r["reused"] for r in first.to_pylist()) <= len(users) - unique_bodies(users)
    book = openpyxl.load_workbook(tmp_path / "second" / "results.xlsx", read_only=True)
    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(values_only=True) if len(r) > 1}
    assert summary["answers reused from the store"] == len(users)
    assert summary["requests saved by the store"] == unique_bodies(users)
    assert summary["oldest reused answer"].endswith("s")  # seconds old


def age_store(folder: Path, seconds: float) -> None:
    """Make every stored answer `seconds` older, in the store's own file (no sleeping)."""
    db = sqlite3.connect(folder / "answers.sqlite")
    db.execute("UPDATE answers SET answered_at = answered_at - ?", (seconds,))
    db.commit()
    db.close()


def test_answers_older_than_max_age_are_requested_again(
    tmp_path: Path, answer_store_in_a_temp_folder: Path
) -> None:
    users = make_users(40, seed=8)
    with MockServer(MockSettings(latency_ms=1, jitter_ms=0)) as server:
        url = server.base_url + "/cg/api/pro"
        assert run_into(tmp_path, "first", users, url) == 0
        age_store(answer_store_in_a_temp_folder, 8 * 86_400)  # 8 days old now
        server.reset_stats()
        assert run_into(tmp_path, "week", users, url, cache={"max_age": "7d"}) == 0
        assert server.stats()["calculate"] == unique_bodies(users)  # too old: all again
        age_store(answer_store_in_a_temp_folder, 8 * 86_400)  # the new answers too
        server.reset_stats()
        assert run_into(tmp_path, "month", users, url, cache={"max_age": "30d"}) == 0
        assert server.stats()["calculate"] == 0
        assert run_into(tmp_path, "never", users, url, cache={"max_age": "0"}) == 0
        assert server.stats()["calculate"] == unique_bodies(users)
    check_against_model(results(tmp_path / "month"), users, MockSettings())


def test_refresh_requests_everything_and_offline_sends_nothing(tmp_path: Path) -> None:
    users = make_users(40, seed=9)
    more = users + [
        dict(u, user_id=f"M{i}", amazon=int(u["amazon"]) + 7) for i, u in enumerate(users[:10])
    ]
    with MockServer(MockSettings(latency_ms=1, jitter_ms=0)) as server:
        url = server.base_url + "/cg/api/pro"
        assert run_into(tmp_path, "first", users, url) == 0
        server.reset_stats()
        assert run_into(tmp_path, "again", users, url, "--refresh") == 0
        assert server.stats()["calculate"] == unique_bodies(users)
        refreshed = results(tmp_path / "again").to_pylist()
        assert not any(r["reused"] for r in refreshed if r["attempts"])
        server.reset_stats()
        # Offline: the 10 new bodies have no answer; they fail, and nothing is sent.
        assert run_into(tmp_path, "offline", more, url, "--offline") == 1
        assert server.stats()["calculate"] == 0
        rows = {r["user_id"]: r for r in results(tmp_path / "offline").to_pylist()}
        failed = {uid for uid, r in rows.items() if r["status"] == "failed"}
        assert failed == {f"M{i}" for i in range(10)}
        assert all("offline" in rows[uid]["error"] for uid in failed)
        # Online again, rerun-failed fills exactly those.
        config = tmp_path / "config.toml"
        assert main(["rerun-failed", "--config", str(config), "--no-progress"]) == 0
        assert server.stats()["calculate"] == unique_bodies(more) - unique_bodies(users)
    check_against_model(results(tmp_path / "offline"), more, MockSettings())


def test_plan_says_how_many_requests_the_store_saves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    users = make_users(40, seed=10)
    more = users + [
        dict(u, user_id=f"M{i}", flipkart=int(u["flipkart"]) + 3) for i, u in enumerate(users[:6])
    ]
    with MockServer(MockSettings(latency_ms=1, jitter_ms=0)) as server:
        assert run_into(tmp_path, "first", users, server.base_url + "/cg/api/pro") == 0
    source = write_csv(tmp_path / "more.csv", more)
    config = write_config(tmp_path, source, url=server.base_url + "/cg/api/pro")
    capsys.readouterr()
    assert main(["plan", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    new = unique_bodies(more) - unique_bodies(users)
    assert f"{unique_bodies(users):,} of the bodies have an answer younger than 35d" in text
    assert f"requests to send        {new:,} " in text


def test_kill_9_while_the_store_fills_then_a_new_folder_repeats_little(
    tmp_path: Path, answer_store_in_a_temp_folder: Path
) -> None:
    with MockServer(MockSettings(latency_ms=15, jitter_ms=5)) as server:
        config, users = setup_run(tmp_path, server)
        proc = start_run(config)
        wait_for(lambda: server.stats()["calculate"] >= 200)
        kill_9(proc)
        assert quiet_within(server, 2.0) == 0
        db = sqlite3.connect(answer_store_in_a_temp_folder / "answers.sqlite")
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        db.close()
        # Not a resume: a new folder, where only the store knows what was answered.
        run_ok(config, "--out", str(tmp_path / "second"))
        twice = server.stats()["calculate"] - unique_bodies(users)
    # Requested twice: at most the in-flight requests plus one checkpoint batch per process.
    assert twice <= WORKERS + PROCESSES * 50
    check_against_model(results(tmp_path / "second"), users, MockSettings())


def test_a_twin_answered_earlier_in_the_same_run_counts_as_deduped_not_reused(
    tmp_path: Path,
) -> None:
    """On a first run, a twin whose owner sits in an earlier shard finds the owner's answer
    in the answer store when its shard starts: that is this run's own answer, a request
    deduplication saves, not an answer reused from an earlier run."""
    users = make_users(80, seed=3)
    shard_size = 16
    first_shard: dict[tuple[tuple[str, float], ...], int] = {}
    for i, user in enumerate(users):
        first_shard.setdefault(tuple(sorted(body_of(user).items())), i // shard_size)
    later = [
        i
        for i, u in enumerate(users)
        if first_shard[tuple(sorted(body_of(u).items()))] < i // shard_size
    ]
    assert later, "the data must have twins whose owner is in an earlier shard"
    processing = {"processes": 1, "max_workers": 4, "shard_size": shard_size}
    with MockServer(MockSettings(latency_ms=1, jitter_ms=0)) as server:
        url = server.base_url + "/cg/api/pro"
        assert run_into(tmp_path, "first", users, url, processing=processing) == 0
        assert server.stats()["calculate"] == unique_bodies(users)
    first = results(tmp_path / "first").to_pylist()
    assert not any(row["reused"] for row in first)
    assert all(first[i]["attempts"] == 0 for i in later)  # copied, not sent
    book = openpyxl.load_workbook(tmp_path / "first" / "results.xlsx", read_only=True)
    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(values_only=True) if len(r) > 1}
    assert summary["answers reused from the store"] == 0
    assert summary["requests saved by the store"] == 0
    assert summary["deduped"] == len(users) - unique_bodies(users)
