"""atomic.py: a file is replaced whole or not at all, and a failure names the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.state.atomic import atomic_file, atomic_path


def test_a_write_replaces_the_file_with_the_mode_open_would_give(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.json"
    with atomic_file(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_a_failing_block_leaves_the_old_file_and_no_temporary_one(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target, "w", durable=False) as handle:
        handle.write("half")
        raise RuntimeError("writer failed")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_failed_move_names_the_target_not_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    (target / "inside").mkdir(parents=True)  # a folder with files: nothing can replace it
    with pytest.raises(OSError) as caught, atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".taken.")
        tmp.write_bytes(b"x")
    assert caught.value.filename == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
