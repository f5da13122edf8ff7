"""What every command reads from its parsed arguments: the config, with the flags that
override its keys, and the run folder a command works on."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from pipeline.config import Config, load_config

if TYPE_CHECKING:  # imported when called: the store brings pyarrow, which --help can do without
    from pipeline.state.store import RunLayout

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


def config_of(args: argparse.Namespace) -> Config:
    """The config of `--config`, with the value of every override flag given."""
    overrides: dict[str, Any] = {}
    for flag, key in _OVERRIDES.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides[key] = value
    return load_config(args.config, overrides)


def run_folder(args: argparse.Namespace) -> RunLayout:
    """The run folder named by --out, else by the config (which is then needed)."""
    from pipeline.state.store import RunLayout

    return RunLayout(args.out if args.out is not None else config_of(args).output.dir)
