"""The `status`, `watch` and `control` commands: a run seen and steered from another terminal.

Parsing and printing only: the figures are `view/status.py`'s and `view/watch.py`'s, the
orders `ops/control.py`'s. Each reads the run folder; none needs the run to be going.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.commands.args import Subparsers, config_of, run_folder
from pipeline.errors import EXIT_OK


def add_status(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    text = "shards and rows by state, errors by kind, and what the next run would do"
    cmd = sub.add_parser("status", parents=[common], help=text, description=text)
    cmd.add_argument(
        "--out", type=Path, metavar="DIR", help="output folder (default: [output] dir)"
    )
    cmd.add_argument("--json", action="store_true", help="print one JSON object")
    cmd.set_defaults(handler=_status)


def _status(args: argparse.Namespace) -> int:
    from pipeline.view import status

    config = config_of(args)
    facts = status.collect(config)
    print(json.dumps(facts, indent=2) if args.json else status.render(facts))
    return EXIT_OK


def add_watch(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    text = "follow a run going in another terminal: the same view, from its output folder"
    cmd = sub.add_parser("watch", parents=[common], help=text, description=text)
    cmd.add_argument(
        "--out", type=Path, metavar="DIR", help="the run's output folder (default: [output] dir)"
    )
    cmd.set_defaults(handler=_watch)


def _watch(args: argparse.Namespace) -> int:
    from rich.console import Console

    from pipeline.view.watch import watch

    try:
        return watch(run_folder(args), Console(), live=sys.stdout.isatty())
    except KeyboardInterrupt:  # leaving the view stops nothing
        return EXIT_OK


def add_control(sub: Subparsers, common: argparse.ArgumentParser) -> None:
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
    print(control.send(run_folder(args), order))
    return EXIT_OK
