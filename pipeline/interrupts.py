"""Ctrl+C and SIGTERM outside the worker pool: stop the command, and remember that it stopped.

`install()` (the CLI, at the start of each command) makes both signals raise
`KeyboardInterrupt` in the main thread (exit 130) and set a flag. The flag is what makes an
interrupt stick: a library that checks for signals in its own loop (the input readers, the
workbook's writer) may swallow the exception, and the command would go on and finish. The
atomic writes ask `interrupted()` before moving a new file into place (store.py), and the pool
asks it before starting, so a swallowed interrupt still stops the command before it changes
anything, leaving the old files.

While the pool runs, pool.py handles both signals itself: the first is an orderly stop (which
does not set the flag: the run saves its state and ends with 130 on its own).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_flag = threading.Event()


def install() -> None:
    """Both signals interrupt the command (main thread only; elsewhere, nothing to do)."""
    reset()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _interrupt)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _flag.set()
    raise KeyboardInterrupt


def reset() -> None:
    _flag.clear()


def interrupted() -> bool:
    return _flag.is_set()


def check() -> None:
    """Raise `KeyboardInterrupt` if the command was interrupted, even if that was swallowed."""
    if _flag.is_set():
        raise KeyboardInterrupt
