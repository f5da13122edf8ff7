"""The `pipeline` command: parse, call one library function, map errors to exit codes.

The commands themselves, their flags and what each does, are in commands/, by family.

`main(argv) -> int` is what the tests call, in-process: it leaves the interpreter as it found
it (its log set-up lasts while the command runs). `entry()`, the console script and `python -m
pipeline`, is the only place that changes its process for good: pandas kept out, SIGTERM as
Ctrl+C, `gc.freeze()` at exit. A user's mistake (config, input, usage) is one line on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NoReturn

from pipeline import __version__, interrupts
from pipeline.commands import add_commands
from pipeline.errors import EXIT_INTERRUPTED, PipelineError, local_error
from pipeline.imports import skip_pandas

log = logging.getLogger("pipeline")

EXIT_CODES = """exit codes:
  0    finished, no row failed
  1    finished, some rows failed (rerun-failed retries them)
  2    usage, config or input error; nothing requested, output folder untouched
  3    the API stayed unavailable; state saved, run again to resume
  4    the API refused the run (credentials, or one permanent error for all); state saved
  5    a local failure (disk full, permission denied, damaged state, a worker that keeps
       dying); state saved, the message names the path or shard
  130  interrupted (Ctrl+C, SIGTERM); state saved, run again to resume"""


def entry() -> NoReturn:
    """The `pipeline` command (and `python -m pipeline`): `main`, then exit.

    Pandas is kept out of the process (imports.py), and Ctrl+C and SIGTERM stop a command for
    good (interrupts.py). At exit `gc.freeze()` spares the interpreter a last collection over
    every object the imports made, which die with the process anyway (BENCHMARKS.md).
    """
    skip_pandas()
    interrupts.install()
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    interrupts.reset()
    with _console_log(args.verbose):
        try:
            return int(args.handler(args))
        except PipelineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return exc.exit_code
        except OSError as exc:  # a file of the run: disk full, permission denied, ...
            error = local_error(exc)
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=Path("config.toml"),
        metavar="PATH",
        help="config file (default: ./config.toml)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser = argparse.ArgumentParser(
        prog="pipeline",
        description="Call the CardGenius API once per user: sharded, rate-limited, "
        "resumable, merged to Excel.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"), common)
    return parser


@contextlib.contextmanager
def _console_log(verbose: bool) -> Iterator[None]:
    """While the command runs, log lines go to stderr (stdout is for a command's own output,
    like `status --json`); then the `pipeline` logger is as it was."""
    level, handlers, propagate = log.level, list(log.handlers), log.propagate
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    for old in [h for h in handlers if h.get_name() == "console"]:
        log.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name("console")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.propagate = False
    try:
        yield
    finally:
        log.removeHandler(handler)
        for h in list(log.handlers):
            log.removeHandler(h)
        for h in handlers:
            log.addHandler(h)
        log.setLevel(level)
        log.propagate = propagate


if __name__ == "__main__":  # pragma: no cover
    entry()
