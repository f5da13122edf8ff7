"""The `plan`, `import-config` and `mock-api` commands: what comes before a run.

Parsing and printing only: the plan is `plan/`'s, the conversion `importconfig.py`'s, the
simulated API `mockapi/`'s.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.commands.args import Subparsers, config_of
from pipeline.errors import EXIT_OK, PipelineError


def add_plan(sub: Subparsers, common: argparse.ArgumentParser) -> None:
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

    print(plan(config_of(args), probe=args.probe))
    return EXIT_OK


def add_import_config(sub: Subparsers, common: argparse.ArgumentParser) -> None:
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


def add_mock_api(sub: Subparsers, common: argparse.ArgumentParser) -> None:
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

    settings = mock_settings(config_of(args)) if args.config.exists() else mockapi.MockSettings()
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
