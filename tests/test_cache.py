"""The answer store's parts on real files: packing, ages, endpoints, stats and prune."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support import write_config, write_csv

from pipeline import schema
from pipeline.api.cardgenius import derive
from pipeline.cli import main
from pipeline.config import ConfigError, build_config
from pipeline.configrules import parse_age
from pipeline.mockapi import MockSettings, compute_response
from pipeline.state.cache import STORE_FILE, AnswerStore, Stored, pack, prune, store_stats, unpack

FIELDS = ["amazon_spends", "flipkart_spends", "other_online_spends"]


def outcome_for(body: dict[str, float], top_n: int) -> dict[str, Any]:
    cards = compute_response(body, MockSettings())["savings"]
    row = derive(cards, FIELDS, top_n)
    row.update({schema.STATUS: schema.OK if cards else schema.NO_CARDS, schema.HTTP_STATUS: 200})
    return row


@pytest.mark.parametrize("body", [{"amazon_spends": 12000, "flipkart_spends": 300.5}, {}])
def test_a_packed_answer_gives_back_every_column_a_row_needs(body: dict[str, float]) -> None:
    body = {f: body.get(f, 0) for f in FIELDS}
    for stored_top, wanted in ((3, 3), (5, 2), (3, 1)):
        expected = outcome_for(body, wanted)
        got = unpack(pack(outcome_for(body, stored_top), FIELDS, stored_top), FIELDS, wanted)
        assert got is not None
        assert {k: got[k] for k in expected} == expected
    # Stored with 2 of 15 cards, it cannot answer a run that wants 3 (unless fewer ranked).
    if body["amazon_spends"]:
        assert unpack(pack(outcome_for(body, 2), FIELDS, 2), FIELDS, 3) is None
    else:  # no cards at all: any top_n is answered
        assert unpack(pack(outcome_for(body, 2), FIELDS, 2), FIELDS, 3) is not None


def test_answers_are_kept_per_endpoint_and_by_age(tmp_path: Path) -> None:
    now = [1_000_000.0]
    path = tmp_path / STORE_FILE
    mock = AnswerStore(path, "mock", clock=lambda: now[0])
    real = AnswerStore(path, "real", clock=lambda: now[0])
    mock.put_many([(1, Stored(now[0] - 100, b"m1")), (2, Stored(now[0] - 10, b"m2"))])
    assert real.get_many([1, 2], 1000) == {}  # a mock answer never answers a real run
    assert set(mock.get_many([1, 2, 3], 1000)) == {1, 2}
    assert set(mock.get_many([1, 2], 50)) == {2}  # 100 s old is past a 50 s max_age
    assert mock.get_many([1, 2], 0) == {}  # "0": never reuse
    mock.put_many([(1, Stored(now[0], b"newer"))])
    assert mock.get_many([1], 50)[1].packed == b"newer"
    stats = store_stats(path, clock=lambda: now[0])
    assert stats["answers"] == 2 and stats["endpoints"][0]["oldest_age_s"] == 10.0
    now[0] += 20
    assert prune(path, 25, clock=lambda: now[0]) == 1  # the answer 30 s old goes
    assert set(mock.get_many([1, 2], 1000)) == {1}
    mock.close()
    real.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


def test_ages_and_a_bad_max_age(tmp_path: Path) -> None:
    assert [parse_age(a) for a in ("0", "7d", "36h", "30m", "90s")] == [0, 604800, 129600, 1800, 90]
    with pytest.raises(ConfigError, match=r"\[cache\] max_age = '3w'"):
        build_config({"request": {"amazon_spends": "a"}, "cache": {"max_age": "3w"}})


def test_cache_stats_and_prune_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], answer_store_in_a_temp_folder: Path
) -> None:
    config = write_config(tmp_path, write_csv(tmp_path / "u.csv", []))
    store = AnswerStore(answer_store_in_a_temp_folder / STORE_FILE, '{"auth":"none"}')
    store.put_many([(7, Stored(0.0, b"old")), (8, Stored(2e9, b"new"))])
    store.close()
    assert main(["cache", "stats", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answers"] == 2
    assert main(["cache", "prune", "--config", str(config)]) == 0  # older than max_age
    assert "Dropped 1 answer(s) older than 35d" in capsys.readouterr().out
    assert main(["cache", "stats", "--config", str(config)]) == 0
    assert "answers: 1 (a run reuses those younger than 35d)" in capsys.readouterr().out
    assert main(["cache", "prune", "--config", str(config), "--older-than", "soon"]) == 2


def test_an_unusable_store_folder_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    source = write_csv(tmp_path / "u.csv", [])
    config = write_config(tmp_path, source, cache={"path": str(blocker)})
    assert main(["run", "--config", str(config), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "[cache] path: cannot use the answer store" in err and "Traceback" not in err
