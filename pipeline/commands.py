"""The commands: each one's flags, and what it does (parse, call one library function, print).

`add_commands` gives the `pipeline` parser every command, each with its handler as
`handler`: a function of the parsed arguments that returns the exit code. A user's mistake
is a `PipelineError`, which cli.py turns into one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pipeline import cli_reuse
from pipeline.config import Config, load_config
from pipeline.errors import EXIT_OK, PipelineError

Subparsers = Any
"""argparse's subparsers action (its class is private)."""

# Command-line flag -> config key it overrides.
_OVERRIDES = {
    "input": "input.path",
    "out": "output.dir",
    "max_workers": "processing.max_workers",
    "processes": "processing.processes",
    "rate": "processing.rate_limit",
    "shard_size": "processing.shard_size",
    "mock": "api.mock",
}


def add_commands(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Every command's parser; `common`: the options every command takes."""
    for add in (
        _add_run,
        _add_merge,
        _add_status,
        _add_plan,
        _add_import_config,
        _add_watch,
        _add_control,
        _add_mock_api,
    ):
        add(sub, common)
    cli_reuse.add_commands(sub, common, _config)


def _add_run(sub: Subparsers, common: argparse.ArgumentParser) -> None:
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
    cli_reuse.run_flags(cmd)


def _config(args: argparse.Namespace) -> Config:
    overrides: dict[str, Any] = {}
    for flag, key in _OVERRIDES.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    return load_config(args.config, overrides)


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
    cli_reuse.check_min_change(args.min_change)
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

    config = _config(args)
    return coordinator.run(config, _run_options(args, retry_failed=False))


def _rerun_failed(args: argparse.Namespace) -> int:
    from pipeline.run import coordinator

    config = _config(args)
    return coordinator.run(config, _run_options(args, retry_failed=True))


def _add_merge(sub: Subparsers, common: argparse.ArgumentParser) -> None:
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

    config = _config(args)
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


def _add_status(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    text = "shards and rows by state, errors by kind, and what the next run would do"
    cmd = sub.add_parser("status", parents=[common], help=text, description=text)
    cmd.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (default: [output] dir)"
    )
    cmd.add_argument("--json", action="store_true", help="print one JSON object")
    cmd.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from pipeline.view import status

    config = _config(args)
    facts = status.collect(config)
    print(json.dumps(facts, indent=2) if args.json else status.render(facts))
    return EXIT_OK


def _add_plan(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    text = "before a batch: rows, unique requests, load, bandwidth, duration, partner notice"
    cmd = sub.add_parser("plan", parents=[common], help=text, description=text)
    cmd.add_argument("--input", metavar="PATH", help="input file (.csv, .parquet, .xlsx)")
    cmd.add_argument("--max-workers", type=int, metavar="N", help="plan for N requests in flight")
    cmd.add_argument("--rate", type=float, metavar="R", help="plan for R requests/s; 0 = no limit")
    cmd.add_argument(
        "--probe",
        type=int,
        default=0,
        metavar="N",
        help="send N real requests first to measure latency and response size (default: 0)",
    )
    cmd.set_defaults(handler=_plan)


def _plan(args: argparse.Namespace) -> int:
    from pipeline.plan.figures import plan

    print(plan(_config(args), probe=args.probe))
    return EXIT_OK


def _add_import_config(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    text = "turn the thread-pool script's JSON config into a config.toml"
    cmd = sub.add_parser("import-config", help=text, description=text)
    cmd.add_argument("old", type=Path, metavar="OLD.json", help="the script's JSON config")
    cmd.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="PATH",
        default=Path("config.toml"),
        help="the config to write; never overwritten (default: ./config.toml)",
    )
    cmd.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    cmd.set_defaults(handler=_import_config)


def _import_config(args: argparse.Namespace) -> int:
    from pipeline.importconfig import import_config, report

    converted = import_config(args.old, args.output)
    print(report(converted, args.old, args.output))
    return EXIT_OK


def _add_watch(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    text = "follow a run going in another terminal: the same view, from its output folder"
    cmd = sub.add_parser("watch", parents=[common], help=text, description=text)
    cmd.add_argument(
        "--out", type=Path, metavar="DIR", help="the run's output folder (default: [output] dir)"
    )
    cmd.set_defaults(handler=_watch)


def _run_folder(args: argparse.Namespace) -> Any:
    """The run folder named by --out, else by the config (which is then needed)."""
    from pipeline.state.store import RunLayout

    return RunLayout(args.out if args.out is not None else _config(args).output.dir)


def _watch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipeline.view.watch import watch

    try:
        return watch(_run_folder(args), Console(), live=sys.stdout.isatty())
    except KeyboardInterrupt:  # leaving the view stops nothing
        return EXIT_OK


def _add_control(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    text = "steer a running run: pause, resume, rate R (requests/s, 0 = no limit), stop"
    cmd = sub.add_parser("control", parents=[common], help=text, description=text)
    cmd.add_argument("action", choices=("pause", "resume", "rate", "stop"))
    cmd.add_argument("value", nargs="?", help="for rate: requests per second, all processes")
    cmd.add_argument(
        "--out", type=Path, metavar="DIR", help="the run's output folder (default: [output] dir)"
    )
    cmd.set_defaults(handler=_control)


def _control(args: argparse.Namespace) -> int:
    from pipeline.ops import control

    order = control.command(args.action, args.value)
    print(control.send(_run_folder(args), order))
    return EXIT_OK


# mock-api's settings: flag, type, metavar, help (the default is the [mock] key's).
_MOCK_FLAGS: tuple[tuple[str, type, str, str], ...] = (
    ("--latency-ms", float, "MS", "mean response time (default: 150)"),
    ("--jitter-ms", float, "MS", "response time spread (default: 50)"),
    ("--error-rate", float, "SHARE", "share of answers that are HTTP 500, 0-1 (default: 0)"),
    ("--fail-share", float, "SHARE", "share of users always answered 500, 0-1 (default: 0)"),
    ("--rate-limit", float, "R", "requests/s above which it answers 429; 0 = none (default: 0)"),
    ("--limit-window", float, "S", "seconds: the sliding or fixed window (default: 1)"),
    ("--limit-burst", int, "N", "token bucket size; 0 = rate/4 (default: 0)"),
    ("--rate-schedule", str, "S:R,...", 'rate changes from the first request, e.g. "20:30,40:80"'),
    ("--cards", int, "N", "catalogue size, 1-100 (default: 15)"),
    ("--seed", int, "N", "the catalogue's seed (default: 0)"),
)
_MOCK_CHOICES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "--limit-kind",
        ("sliding", "fixed", "token-bucket"),
        "how the rate limit is enforced (default: sliding)",
    ),
    ("--retry-after", ("seconds", "date", "none"), "Retry-After on a 429 (default: seconds)"),
    (
        "--limit-headers",
        ("none", "ietf", "x"),
        "RateLimit-* (ietf) or X-RateLimit-* (x) headers on every answer (default: none)",
    ),
)


def _add_mock_api(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    text = (
        "serve the simulated CardGenius API on 127.0.0.1 until Ctrl+C; each setting not given "
        "here is the config's [mock] key of the same name (its default without a config file)"
    )
    cmd = sub.add_parser(
        "mock-api",
        parents=[common],
        help="serve the simulated CardGenius API on 127.0.0.1",
        description=text,
    )
    cmd.add_argument("--port", type=_port, default=8765, help="TCP port, 1-65535 (default: 8765)")
    for flag, kind, metavar, text in _MOCK_FLAGS:
        cmd.add_argument(flag, type=kind, metavar=metavar, help=text)
    for flag, choices, text in _MOCK_CHOICES:
        cmd.add_argument(flag, choices=choices, help=text)
    cmd.set_defaults(handler=_mock_api)


def _mock_api(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipeline import mockapi
    from pipeline.api.endpoint import mock_settings

    settings = mock_settings(_config(args)) if args.config.exists() else mockapi.MockSettings()
    changes = {
        "latency_ms": args.latency_ms,
        "jitter_ms": args.jitter_ms,
        "error_rate": args.error_rate,
        "fail_share": args.fail_share,
        "rate_limit": args.rate_limit,
        "limit_kind": args.limit_kind,
        "limit_window_s": args.limit_window,
        "limit_burst": args.limit_burst,
        "retry_after": args.retry_after,
        "limit_headers": args.limit_headers,
        "rate_schedule": args.rate_schedule,
        "cards": args.cards,
        "seed": args.seed,
    }
    try:
        settings = replace(settings, **{k: v for k, v in changes.items() if v is not None})
    except ValueError as exc:
        raise PipelineError(f"mock-api: {exc}") from None
    try:
        mockapi.serve(settings, "127.0.0.1", args.port, lambda line: print(line, flush=True))
    except OSError as exc:
        raise PipelineError(
            f"mock-api: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}"
        ) from None
    return EXIT_OK


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return port
