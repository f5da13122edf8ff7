"""The commands, by family: each one's flags, and what it does (parse, call one library
function, print).

`add_commands` gives the `pipeline` parser every command, each with its handler as
`handler`: a function of the parsed arguments that returns the exit code. A user's mistake
is a `PipelineError`, which cli.py turns into one line and exit code 2.

    run.py       run, rerun-failed, merge: a run and its workbook
    follow.py    status, watch, control: a run seen and steered from another terminal
    prepare.py   plan, import-config, mock-api: before a run
    reuse.py     cache, compare: the answer store kept across runs, and what changed
    args.py      what every command reads from its arguments (the config, the run folder)
"""

from __future__ import annotations

import argparse

from pipeline.commands import follow, prepare, reuse, run
from pipeline.commands.args import Subparsers


def add_commands(sub: Subparsers, common: argparse.ArgumentParser) -> None:
    """Every command's parser, in the order `pipeline --help` lists them; `common`: the
    options every command takes."""
    for add in (
        run.add_run,
        run.add_merge,
        follow.add_status,
        prepare.add_plan,
        prepare.add_import_config,
        follow.add_watch,
        follow.add_control,
        prepare.add_mock_api,
        reuse.add_commands,
    ):
        add(sub, common)
