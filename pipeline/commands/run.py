"""The `run`, `rerun-failed` and `merge` commands: a run, its failed rows again, its workbook.

Parsing and printing only: the run is `run/coordinator.py`'s, the merge `merge/run.py`'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipeline.commands import reuse
from pipeline.commands.args import Subparsers, config_of
from pipeline.errors import EXIT_OK, PipelineError


def add_run(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """`run` and `rerun-failed`, which take the same flags."""
    for name, handler, text in (
        (
            "run",
            _run,
            "shard the input, call the API for every row, merge the workbook (resumes a run)",
        ),
        ("rerun-failed", _rerun_failed, "request again only the rows that failed, then merge"),
    ):
        cmd = sub.add_parser(name, parents=[common], help=text, description=text)
        _run_flags(cmd, retry_failed=handler is _rerun_failed)
        cmd.set_defaults(handler=handler)


def _run_flags(cmd: argparse.ArgumentParser, retry_failed: bool) -> None:
    cmd.add_argument("--input", metavar="PATH", help="input file (.csv, .parquet, .xlsx)")
    cmd.add_argument("--out", metavar="DIR", help="output folder (default: [output] dir)")
    cmd.add_argument(
        "--max-workers", type=int, metavar="N", help="requests in flight, all processes together"
    )
    cmd.add_argument("--processes", type=int, metavar="N", help="worker processes")
    cmd.add_argument(
        "--rate", type=float, metavar="R", help="requests per second, all processes; 0 = no limit"
    )
    cmd.add_argument("--shard-size", type=int, metavar="N", help="input rows per shard")
    cmd.add_argument(
        "--mock", action=argparse.BooleanOptionalAction, help="use the embedded mock API"
    )
    cmd.add_argument("--no-progress", action="store_true", help="plain log lines only")
    cmd.add_argument("--no-merge", action="store_true", help="do not write the workbook")
    fresh = (
        "refused here: it would discard the rows to retry (use `pipeline run --fresh`)"
        if retry_failed
        else "discard the output folder's state, start over"
    )
    cmd.add_argument("--fresh", action="store_true", help=fresh)
    cmd.add_argument(
        "--limit", type=int, metavar="N", help="only the first N input rows (a trial run)"
    )
    reuse.run_flags(cmd)


def _run_options(args: argparse.Namespace, retry_failed: bool) -> Any:
    from pipeline.run.coordinator import RunOptions

    if args.limit is not None and args.limit < 1:
        raise PipelineError(f"--limit {args.limit}: must be at least 1")
    if retry_failed and args.fresh:
        # Starting over would throw away the very rows it is asked to retry.
        raise PipelineError(
            "rerun-failed --fresh: rerun-failed retries the failed rows of the run in the "
            "output folder; to discard that run and start over, use `pipeline run --fresh`"
        )
    reuse.check_min_change(args.min_change)
    return RunOptions(
        answers="refresh" if args.refresh else "offline" if args.offline else "reuse",
        compare_with=args.compare_with,
        min_change=args.min_change,
        fresh=args.fresh,
        merge=not args.no_merge,
        limit=args.limit,
        retry_failed=retry_failed,
        progress="log" if args.no_progress or not sys.stdout.isatty() else "live",
    )


def _run(args: argparse.Namespace) -> int:
    from pipeline.run import coordinator

    config = config_of(args)
    return coordinator.run(config, _run_options(args, retry_failed=False))


def _rerun_failed(args: argparse.Namespace) -> int:
    from pipeline.run import coordinator

    config = config_of(args)
    return coordinator.run(config, _run_options(args, retry_failed=True))


def add_merge(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    text = "build the workbook (or a Parquet or CSV file of every row) from the result shards"
    cmd = sub.add_parser("merge", parents=[common], help=text, description=text)
    cmd.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (default: [output] dir)"
    )
    cmd.add_argument(
        "--format",
        choices=("xlsx", "parquet", "csv"),
        default="xlsx",
        help="xlsx: the workbook (default); parquet or csv: every row, in one file named like "
        "the workbook (results.parquet, results.csv)",
    )
    cmd.set_defaults(handler=_merge)


def _merge(args: argparse.Namespace) -> int:
    from pipeline.merge import ExportReport
    from pipeline.merge.run import merge_run
    from pipeline.state.lock import cleanup_if_free
    from pipeline.state.store import RunLayout, read_run

    config = config_of(args)
    layout = RunLayout(config.output.dir)
    if read_run(layout) is None:
        raise PipelineError(f"{layout.root}: no run here to merge; start one with `pipeline run`")
    with cleanup_if_free(layout):
        report = merge_run(config, layout, args.format)
    if isinstance(report, ExportReport):
        print(f"Wrote {report.path}: {report.rows} rows")
    else:
        print(
            f"Wrote {layout.root / config.output.excel}: "
            f"{report.results_rows} result rows, {report.failures} failures"
        )
    return EXIT_OK
