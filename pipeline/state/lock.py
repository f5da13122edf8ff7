"""One run per output folder: the run's lock, and who holds it.

Two holds, both dropped by the kernel when the process dies, so a killed run never leaves the
folder locked:

- an flock on `out/.lock` (which also names the holder: `pid N`);
- on Linux, a listening socket in the abstract namespace named after the folder's path. It
  lives outside the folder, so deleting the folder under a running run does not free it: a
  second run on the same path is refused until the first has stopped. `status` connects to it
  to tell whether a run is in progress, and by which process.

A run checks `lost()` as it goes: when its folder has been deleted or replaced, it stops.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pipeline.errors import RunStateError, local_error
from pipeline.state.folder import make_folder
from pipeline.state.store import RunLayout
from pipeline.state.upkeep import remove_leftovers

_ABSTRACT = sys.platform.startswith("linux")


def _address(root: Path) -> str:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:32]
    return f"\0cardgenius-pipeline/{digest}"


class RunLock:
    """The lock of `layout`'s folder, held from `acquire` to `release`."""

    def __init__(self, layout: RunLayout) -> None:
        self.layout = layout
        self._handle: IO[str] | None = None
        self._socket: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lock or raise `RunStateError` naming the process that holds it."""
        layout = self.layout
        if _ABSTRACT:
            sock = _bind(layout)
            sock.listen(8)
            self._socket = sock
            # Each `status` leaves a connection in the queue: take them, or the queue fills.
            self._thread = threading.Thread(target=_drain, args=(sock,), name="lock", daemon=True)
            self._thread.start()
        make_folder(layout.root)
        handle = open(layout.lock_file, "a+")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            text = handle.read().strip()
            handle.close()
            self.release()
            raise _in_use(layout, None, text) from None
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()}\n")
            handle.flush()
        except OSError as exc:  # a full disk, a file size limit: name the file
            with contextlib.suppress(OSError):  # closing flushes the refused line again
                handle.close()
            self.release()
            raise local_error(exc, layout.lock_file) from None
        self._handle = handle
        st = os.fstat(handle.fileno())
        self._inode = (st.st_dev, st.st_ino)

    def lost(self) -> bool:
        """True when the folder's lock file is gone or another file: the folder was deleted,
        moved or replaced under the run."""
        try:
            st = os.stat(self.layout.lock_file)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._inode

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        if self._socket is not None:
            with contextlib.suppress(OSError):  # wakes the thread in accept(), which holds it
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
            self._socket = None
        if self._thread is not None:  # once it has let go, the name is free for the next run
            self._thread.join(timeout=5.0)
            self._thread = None


@contextlib.contextmanager
def run_lock(layout: RunLayout) -> Iterator[RunLock]:
    """Hold the folder's lock while the block runs; the leftovers of killed writes are removed
    once it is held (only the holder writes)."""
    lock = RunLock(layout)
    lock.acquire()
    try:
        remove_leftovers(layout)
        yield lock
    finally:
        lock.release()


@contextlib.contextmanager
def cleanup_if_free(layout: RunLayout) -> Iterator[None]:
    """For `merge`: hold the lock while the block runs if no run holds it, and remove the
    leftovers of killed writes first; beside a running run, hold nothing and remove nothing
    (its writes are under way)."""
    lock = RunLock(layout)
    try:
        lock.acquire()
    except RunStateError:
        yield
        return
    try:
        remove_leftovers(layout)
        yield
    finally:
        lock.release()


def holder(layout: RunLayout) -> int | None:
    """The pid of the process running in `layout`'s folder, or None when no run is going."""
    if not _ABSTRACT:
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)  # a full queue says so at once (EAGAIN): try again shortly
        for _ in range(40):
            try:
                sock.connect(_address(layout.root))
                break
            except BlockingIOError:
                time.sleep(0.05)
            except OSError:
                return None
        else:
            return None
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, _, _ = struct.unpack("3i", creds)
        return int(pid)


def _bind(layout: RunLayout) -> socket.socket:
    """The socket bound to the folder's name, or `RunStateError` naming the run that has it.
    A name nobody listens on is being let go by a run that just ended: tried again shortly."""
    for _ in range(20):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(_address(layout.root))
            return sock
        except OSError:
            sock.close()
        pid = holder(layout)
        if pid is not None:
            raise _in_use(layout, pid)
        time.sleep(0.05)
    raise _in_use(layout, None)


def _drain(sock: socket.socket) -> None:
    while True:
        try:
            conn, _ = sock.accept()
        except OSError:  # closed: the lock was released
            return
        conn.close()


def _in_use(layout: RunLayout, pid: int | None, text: str = "") -> RunStateError:
    who = f"pid {pid}" if pid else (text or "another process")
    return RunStateError(
        f"{layout.root} is in use by a run that is still going ({who}); "
        "wait for it, stop it, or use --out for another folder"
    )
