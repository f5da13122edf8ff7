"""commands/: each family's parser, and what every command reads from its arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pipeline.commands import add_commands
from pipeline.commands.args import config_of, run_folder

ROOT = Path(__file__).resolve().parents[1]


def parse(*argv: str) -> argparse.Namespace:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=ROOT / "config.toml")
    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command", required=True), common)
    return parser.parse_args(argv)


def test_every_override_flag_sets_its_key(tmp_path: Path) -> None:
    args = parse(
        "run",
        *("--input", str(tmp_path / "u.csv"), "--out", str(tmp_path / "o")),
        *("--max-workers", "9", "--processes", "3", "--rate", "7.5", "--shard-size", "40"),
        "--no-mock",
    )
    config = config_of(args)
    assert config.input.path == tmp_path / "u.csv"
    assert config.output.dir == tmp_path / "o"
    p = config.processing
    assert (p.max_workers, p.processes, p.rate_limit, p.shard_size) == (9, 3, 7.5, 40)
    assert config.api.mock is False


def test_a_flag_left_out_keeps_the_config_s_value() -> None:
    config = config_of(parse("plan"))
    assert config.processing.max_workers == 20 and config.api.mock is True
    assert config.output.dir == ROOT / "out"


def test_the_run_folder_is_out_else_the_config_s(tmp_path: Path) -> None:
    assert run_folder(parse("watch", "--out", str(tmp_path))).root == tmp_path
    assert run_folder(parse("control", "pause")).root == ROOT / "out"
    # With --out the config is not read: a run can be steered without it.
    missing = parse("control", "stop", "--out", str(tmp_path), "--config", "nowhere.toml")
    assert run_folder(missing).root == tmp_path


@pytest.mark.parametrize(
    "command", ["run", "rerun-failed", "merge", "status", "plan", "watch", "compare"]
)
def test_each_family_gives_its_commands_a_handler(command: str) -> None:
    extra = {"compare": ("a", "b")}.get(command, ())
    assert callable(parse(command, *extra).handler)
