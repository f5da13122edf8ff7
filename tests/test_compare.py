"""`run --compare-with` and `pipeline compare`: two real runs against the mock on a real port,
the second on a changed table, into a new folder; the second sends only the new bodies (the
answer store has the others), and the Changes sheet and changes.parquet list exactly the users
whose answers differ, by the mock's own model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openpyxl
import polars as pl
from support import (
    body_of,
    check_against_model,
    expected_top,
    make_users,
    results,
    write_config,
    write_csv,
)

from pipeline.cli import main
from pipeline.compare import compare_runs
from pipeline.mockapi import MockServer, MockSettings


def changed_table(users: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spends of every 5th user changed (20%), every 20th dropped (5%), 5% new users."""
    table = []
    for i, user in enumerate(users):
        if i % 20 == 7:
            continue
        table.append(dict(user, amazon=int(user["amazon"]) + 20_000) if i % 5 == 1 else user)
    extra = make_users(10, seed=77)[4 : 4 + len(users) // 20]
    return table + [dict(u, user_id=f"N{i:04d}") for i, u in enumerate(extra)]


def bodies(users: list[dict[str, Any]]) -> set[tuple[tuple[str, float], ...]]:
    return {tuple(sorted(body_of(u).items())) for u in users}


def top(user: dict[str, Any]) -> tuple[int, float] | None:
    found = expected_top(user, MockSettings())
    return found[0] if found else None


def test_changes_list_exactly_the_users_whose_answers_differ(tmp_path: Path) -> None:
    before = make_users(60, seed=21)
    after = changed_table(before)
    with MockServer(MockSettings(latency_ms=1, jitter_ms=0)) as server:
        url = server.base_url + "/cg/api/pro"
        for name, users in (("old", before), ("new", after)):
            server.reset_stats()
            source = write_csv(tmp_path / f"{name}.csv", users)
            config = write_config(tmp_path, source, url=url, output={"dir": str(tmp_path / name)})
            extra = ["--compare-with", str(tmp_path / "old"), "--min-change", "0"]
            argv = ["run", "--config", str(config), "--no-progress"]
            assert main(argv + (extra if name == "new" else [])) == 0
        # The second run sent exactly the bodies the first did not: changed and added rows.
        assert server.stats()["calculate"] == len(bodies(after) - bodies(before)) > 0
    check_against_model(results(tmp_path / "new"), after, MockSettings())
    old = {u["user_id"]: top(u) for u in before}
    new = {u["user_id"]: top(u) for u in after}
    expected = {uid for uid in old.keys() | new.keys() if old.get(uid, 0) != new.get(uid, 0)}
    changes = pl.read_parquet(tmp_path / "new" / "changes.parquet")
    assert set(changes["id"]) == expected
    kinds = dict(zip(changes["id"], changes["change"], strict=True))
    assert {k for k, v in kinds.items() if v == "added"} == new.keys() - old.keys()
    assert {k for k, v in kinds.items() if v == "removed"} == old.keys() - new.keys()
    for uid, kind in kinds.items():
        if kind == "top card changed":  # from or to no card at all, too
            assert (old[uid] or (None,))[0] != (new[uid] or (None,))[0]
        if kind == "savings moved":
            assert old[uid] and new[uid] and old[uid][0] == new[uid][0]
    book = openpyxl.load_workbook(tmp_path / "new" / "results.xlsx", read_only=True)
    sheet = list(book["Changes"].iter_rows(values_only=True))
    assert sheet[0][:2] == ("id", "change") and {r[0] for r in sheet[1:]} == expected
    summary = {r[0]: r[1] for r in book["Summary"].iter_rows(values_only=True) if len(r) > 1}
    assert summary["users added"] == len(new.keys() - old.keys()) == 3
    assert summary["users removed"] == 3


def test_compare_command_and_the_threshold(tmp_path: Path) -> None:
    users = make_users(30, seed=3)
    raised = [dict(u, flipkart=int(u["flipkart"]) + 1) for u in users]  # tiny moves only
    with MockServer(MockSettings(latency_ms=1, jitter_ms=0)) as server:
        url = server.base_url + "/cg/api/pro"
        configs = []
        for name, table in (("a", users), ("b", raised)):
            source = write_csv(tmp_path / f"{name}.csv", table)
            configs.append(
                write_config(tmp_path, source, url=url, output={"dir": str(tmp_path / name)})
            )
            assert main(["run", "--config", str(configs[-1]), "--no-progress"]) == 0
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(["compare", a, b, "--config", str(configs[-1]), "--min-change", "1e9"]) == 0
    moved = pl.read_parquet(tmp_path / "b" / "changes.parquet")
    assert set(moved["change"]) <= {"top card changed"}  # no savings move passes 1e9 rupees
    # In parts of a few users each, joined one part at a time: the same changes.
    whole = compare_runs(Path(a), Path(b), 0.0)
    expected = pl.read_parquet(tmp_path / "b" / "changes.parquet")
    assert compare_runs(Path(a), Path(b), 0.0, part_rows=4) == whole
    assert pl.read_parquet(tmp_path / "b" / "changes.parquet").equals(expected)
    assert len(expected) > 0
    assert main(["compare", a, b, "--config", str(configs[-1]), "--min-change", "-1"]) == 2
    assert main(["compare", a, str(tmp_path / "nowhere"), "--config", str(configs[-1])]) == 2
