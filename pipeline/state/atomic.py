"""Atomic writes: a file is replaced whole, or not at all.

A file that matters is written to a temporary name in the same folder, flushed to disk, then
moved over the target with `os.replace`: a kill at any moment leaves the old file or the new
one, never half of one (a `.NAME.*.tmp` file may stay: see upkeep.py). A write that fails
names the target, not its temporary file. An interrupted command moves nothing into place
(interrupts.py).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pipeline import interrupts


@contextlib.contextmanager
def atomic_file(path: Path, mode: str = "wb", *, durable: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success fsync it and move it over `path`.

    On an exception the temporary file is removed and `path` is left as it was. `durable =
    False` skips the fsyncs, for a file rewritten every second whose loss in a power cut does
    not matter (the rename still makes every reader see a whole file).
    """
    with _replacing(path, durable=durable) as (fd, _), os.fdopen(fd, mode) as handle:
        yield handle
        handle.flush()
        if durable:
            os.fsync(handle.fileno())


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` for a writer that wants a file name (openpyxl,
    pyarrow); when the block succeeds, fsync that file and move it over `path`."""
    with _replacing(path, durable=True) as (fd, tmp):
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())


@contextlib.contextmanager
def _replacing(path: Path, *, durable: bool) -> Iterator[tuple[int, Path]]:
    """A temporary file beside `path` (its open descriptor and its path), moved over `path`
    when the block succeeds and removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, _FILE_MODE)
    tmp = Path(tmp_name)
    try:
        yield fd, tmp
        interrupts.check()  # an interrupted command changes nothing (interrupts.py)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise naming(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def naming(exc: OSError, path: Path) -> OSError:
    """The error with the file the user knows (not the temporary one) as its file name."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give; mkstemp makes files 0600


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not every platform lets a folder be opened.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
