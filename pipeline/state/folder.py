"""The output folder as a place: whether it can hold a run, and leaving it as it was found.

A command refused with exit code 2 (a usage, config or input error) must leave the folder
exactly as it found it: `check_folder` refuses an unusable `[output] dir` before anything is
written, and `undo_on_refusal` removes what a run created before it was refused (run.json,
shards, the lock, the log; the folder itself when it did not exist before).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from pipeline.errors import EXIT_USAGE, ConfigError, PipelineError


def check_folder(root: Path) -> None:
    """Raise ConfigError (one line, naming the folder) if `root` cannot be the run folder."""
    if root.exists():
        if not root.is_dir():
            raise ConfigError(f"{root}: [output] dir (or --out) is a file; it must be a folder")
        existing = root
    else:
        existing = root.parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(
                f"{root}: cannot make the output folder there: {existing} is a file "
                "([output] dir or --out)"
            )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{root}: cannot write in {existing} (permission denied); choose another "
            "[output] dir or --out"
        )


def make_folder(root: Path) -> None:
    """Create the run folder; an OS refusal is a one-line ConfigError naming it."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"{root}: cannot make the output folder: {exc.strerror} ([output] dir or --out)"
        ) from None


class Undo:
    """Armed until `disarm()`: the point after which the folder holds work worth keeping."""

    def __init__(self) -> None:
        self.armed = True

    def disarm(self) -> None:
        self.armed = False


@contextlib.contextmanager
def undo_on_refusal(root: Path) -> Iterator[Undo]:
    """Within the block, until the `Undo` it yields is disarmed, a PipelineError with exit
    code 2 removes every entry of `root` the block created (and `root` itself if the block
    created it), then goes on up."""
    existed = root.is_dir()
    before = {entry.name for entry in root.iterdir()} if existed else set()
    undo = Undo()
    try:
        yield undo
    except PipelineError as exc:
        if exc.exit_code == EXIT_USAGE and undo.armed:
            if not existed:
                shutil.rmtree(root, ignore_errors=True)
            elif root.is_dir():
                for entry in root.iterdir():
                    if entry.name not in before:
                        _remove(entry)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
