"""status.py: errors grouped by the kind recorded with each failed row, old folders included."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from support import make_users, results, write_config, write_csv

from pipeline.cli import main
from pipeline.config import load_config
from pipeline.mockapi import MockServer, MockSettings, Rule
from pipeline.view import status

KINDS = {"http_4xx": 1, "http_5xx": 1, "bad_body": 1}


def failed_run(tmp_path: Path) -> Path:
    """A finished run whose rows 3, 9 and 14 failed: a 400, 503s, an HTML 200."""
    users = make_users(20)
    users[3]["amazon"], users[9]["amazon"], users[14]["amazon"] = 4242, 777, 555
    with MockServer(MockSettings(latency_ms=0, jitter_ms=0)) as server:
        server.add_rule(Rule(match={"amazon_spends": 4242}, status=400, body="{}"))
        server.add_rule(Rule(match={"amazon_spends": 777}, status=503, body="busy"))
        server.add_rule(Rule(match={"amazon_spends": 555}, status=200, body="<html>proxy"))
        source = write_csv(tmp_path / "users.csv", users)
        config = write_config(
            tmp_path,
            source,
            url=server.base_url + "/cg/api/pro",
            processing={"processes": 1},
            retry={"max_attempts": 1},  # fewer failures in a row than open the breaker
        )
        assert main(["run", "--config", str(config), "--no-merge"]) == 1
    return config


def rewrite_shards(out: Path, change: str) -> None:
    for path in sorted((out / "shards" / "results").glob("shard-*.parquet")):
        table = pq.read_table(path)
        if change == "drop kind":  # as written before the column existed
            table = table.drop_columns(["error_kind"])
        else:  # a message that reads like another kind: the column decides
            failed = pc.equal(table["status"], "failed")
            timeouts = pc.if_else(failed, "timeout (a misleading message)", table["error"])
            table = table.set_column(table.schema.get_field_index("error"), "error", timeouts)
        pq.write_table(table, path)


def test_each_failed_row_records_its_kind(tmp_path: Path) -> None:
    config = failed_run(tmp_path)
    table = results(tmp_path / "out")
    kinds = dict(zip(table["_row"].to_pylist(), table["error_kind"].to_pylist(), strict=True))
    assert (kinds[3], kinds[9], kinds[14]) == ("http_4xx", "http_5xx", "bad_body")
    assert {k for row, k in kinds.items() if row not in (3, 9, 14)} == {None}
    assert status.collect(load_config(config, {}))["errors_by_kind"] == KINDS

    rewrite_shards(tmp_path / "out", "misleading messages")
    assert status.collect(load_config(config, {}))["errors_by_kind"] == KINDS


def test_result_shards_without_the_kind_column_still_read(tmp_path: Path) -> None:
    config = failed_run(tmp_path)
    rewrite_shards(tmp_path / "out", "drop kind")
    assert status.collect(load_config(config, {}))["errors_by_kind"] == KINDS
    assert main(["merge", "--config", str(config)]) == 0
