"""Run one contender as a process of its own and measure it.

Client CPU is the process tree's user + system time, from `os.wait4` (Linux folds in the
children the contender reaped itself, e.g. a pool's worker processes). Peak RSS is sampled:
the largest sum of the RSS of the contender and all its descendants, read from /proc every
100 ms (`ru_maxrss` would give only the single largest process).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent
PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Measured:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    exit_code: int
    output: str
    started: float
    """time.monotonic() when the process was started (the mock's arrival clock)."""


def python_cmd(module: str, *args: str) -> list[str]:
    """`python -m module args` for a module of the scripts/bench package."""
    return [sys.executable, "-m", module, *args]


def env_with_scripts(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SCRIPTS), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra or {})
    return env


def run(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    pty: bool = False,
    timeout: float = 3600.0,
    kill_after: float | None = None,
) -> Measured:
    """Run `cmd` to its end (or SIGKILL it after `kill_after` seconds) and measure it.

    `pty`: standard input, output and error are a pseudo-terminal (what a user at a terminal
    has), drained by a thread; else output and error go to a pipe and are returned.
    """
    master = slave = -1
    if pty:
        master, slave = os.openpty()
        os.set_inheritable(slave, True)
        io: dict[str, object] = {"stdin": slave, "stdout": slave, "stderr": slave}
    else:
        io = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
    started = time.monotonic()
    proc = subprocess.Popen(list(cmd), cwd=cwd, env=dict(env or env_with_scripts()), **io)  # type: ignore[call-overload]
    chunks: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(master if pty else proc.stdout, chunks))
    reader.daemon = True
    reader.start()
    if pty:
        os.close(slave)
    sampler = _RssSampler(proc.pid)
    sampler.start()
    if kill_after is not None:
        threading.Timer(kill_after, _kill, args=(proc.pid,)).start()
    watchdog = threading.Timer(timeout, _kill, args=(proc.pid,))
    watchdog.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    sampler.stop()
    reader.join(5)
    if pty:
        os.close(master)
    return Measured(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=sampler.peak / 2**20,
        exit_code=proc.returncode,
        output=b"".join(chunks).decode("utf-8", "replace"),
        started=started,
    )


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 9)


def _drain(source: object, chunks: list[bytes]) -> None:
    """Read a pipe (file object) or a pty master (fd) to its end."""
    while True:
        try:
            data = os.read(source, 65536) if isinstance(source, int) else source.read1(65536)  # type: ignore[attr-defined]
        except OSError:  # EIO: the pty's last holder closed it
            return
        if not data:
            return
        chunks.append(data)


class _RssSampler(threading.Thread):
    """Largest summed RSS of a process and its descendants, sampled every 100 ms."""

    def __init__(self, root: int) -> None:
        super().__init__(daemon=True)
        self.root = root
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.1):
            self.peak = max(self.peak, tree_rss(self.root))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def tree_rss(root: int) -> int:
    """Bytes of RSS of `root` and its descendants now."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: ppid
        rss[pid] = int(fields[21]) * PAGE  # fields[21]: rss in pages
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total
