"""The `cache` and `compare` commands: the answer store kept across runs, and what changed
between two runs. Parsing and printing only; the work is in state/cache.py and compare.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pipeline.commands.args import Subparsers, config_of
from pipeline.errors import EXIT_OK, PipelineError


def add_commands(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Add `cache stats`, `cache prune` and `compare`."""
    _cache_parser(sub, common)
    text = "what changed between two runs: the Changes sheet and changes.parquet in NEW_OUT"
    cmd = sub.add_parser("compare", parents=[common], help=text, description=text)
    cmd.add_argument("old_out", type=Path, metavar="OLD_OUT", help="the earlier run's folder")
    cmd.add_argument("new_out", type=Path, metavar="NEW_OUT", help="the later run's folder")
    min_change_flag(cmd)
    cmd.set_defaults(handler=_compare)


def run_flags(cmd: argparse.ArgumentParser) -> None:
    """`run`'s flags for the answer store and for comparing with an older run."""
    store = cmd.add_mutually_exclusive_group()
    store.add_argument(
        "--refresh",
        action="store_true",
        help="request every row again, even if its answer is stored",
    )
    store.add_argument(
        "--offline",
        action="store_true",
        help="send nothing: answers from the store only; rows without one end failed",
    )
    cmd.add_argument(
        "--compare-with", type=Path, metavar="OLD_OUT", help="write what changed since that run"
    )
    min_change_flag(cmd)


def check_min_change(value: float) -> None:
    if value < 0:
        raise PipelineError(f"--min-change {value:g}: must not be negative")


def min_change_flag(cmd: argparse.ArgumentParser) -> None:
    from pipeline.compare import DEFAULT_MIN_CHANGE

    cmd.add_argument(
        "--min-change",
        type=float,
        default=DEFAULT_MIN_CHANGE,
        metavar="RUPEES",
        help="list a user whose best net savings moved by more than this "
        f"(default: {DEFAULT_MIN_CHANGE:g})",
    )


def _cache_parser(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    text = "the answer store kept across runs: what it holds, or drop old answers"
    cmd = sub.add_parser("cache", help=text, description=text)
    actions = cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    text = "answers per endpoint, the oldest and newest, the size on disk"
    stats = actions.add_parser("stats", parents=[common], help=text, description=text)
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(handler=_cache_stats)
    text = "drop old answers and give the space back"
    prune = actions.add_parser("prune", parents=[common], help=text, description=text)
    prune.add_argument(
        "--older-than",
        metavar="AGE",
        help='drop answers older than AGE ("30d", "12h"; "0" = all); default: [cache] max_age',
    )
    prune.set_defaults(handler=_cache_prune)


def _cache_stats(args: argparse.Namespace) -> int:
    from pipeline.config import cache_dir
    from pipeline.state.cache import STORE_FILE, store_stats
    from pipeline.view.cachestats import render

    config = config_of(args)
    facts = store_stats(cache_dir(config) / STORE_FILE)
    print(json.dumps(facts, indent=2) if args.json else render(facts, config.cache.max_age))
    return EXIT_OK


def _cache_prune(args: argparse.Namespace) -> int:
    from pipeline.config import cache_dir
    from pipeline.configrules import parse_age
    from pipeline.state.cache import STORE_FILE, prune

    config = config_of(args)
    age = args.older_than if args.older_than is not None else config.cache.max_age
    try:
        seconds = parse_age(age)
    except ValueError as exc:
        raise PipelineError(f"--older-than: {exc}") from None
    path = cache_dir(config) / STORE_FILE
    print(f"Dropped {prune(path, seconds):,} answer(s) older than {age} from {path}")
    return EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipeline.compare import CHANGES_FILE, compare_runs
    from pipeline.merge.run import merge_run
    from pipeline.state.store import RunLayout

    check_min_change(args.min_change)
    config = config_of(args)
    config = replace(config, output=replace(config.output, dir=args.new_out))
    found = compare_runs(args.old_out, args.new_out, args.min_change)
    merge_run(config, RunLayout(args.new_out))
    counts = ", ".join(f"{kind} {n:,}" for kind, n in found.counts.items())
    print(f"Wrote {args.new_out / CHANGES_FILE} and {config.excel_path}: {counts}")
    return EXIT_OK
