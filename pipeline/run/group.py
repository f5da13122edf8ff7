"""The workers that run shards: processes fed over a pipe each, or one thread in this process.

`ProcessGroup` (processes > 1) starts its worker processes at once, with SIGINT and SIGTERM
blocked so that neither can reach one while it is still importing (worker.py ignores both,
then unblocks them). It gives each idle process the next shard over that process's own pipe,
so it always knows which shard a process runs: when one dies (the OOM killer, `kill -9`),
`collect` reports the shard, gives back what the dead process held of the shared limits
(request slots, its running shard, the limiter's lock) and starts another process in its
place. Nothing else is disturbed: the other processes go on with their shards.

`ThreadGroup` (processes = 1) runs the shards on one background thread of this process, with
the same interface: the way to debug.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.errors import LocalError
from pipeline.run import worker
from pipeline.run.tasks import ShardReport, ShardTask, WorkerSettings
from pipeline.traffic.shared import SharedLimits

JOIN_SECONDS = 60.0
"""How long leaving the pool waits for a process to end its in-flight requests and exit."""
MAX_START_FAILURES = 3
"""Processes that may die before their first shard (a broken install) before the run stops."""


@dataclass(frozen=True)
class Done:
    """A shard that left a worker: its report, the error it raised, or the worker's death."""

    task: ShardTask
    report: ShardReport | None = None
    error: BaseException | None = None
    died: str = ""
    """How the worker died ("killed by SIGKILL", "exit code 1"); empty if it did not."""
    started: bool = True
    """False: the worker died before it had started, so not through the shard's fault."""


class Group(Protocol):
    def dispatch(self, settings: WorkerSettings, pending: deque[ShardTask]) -> None:
        """Give the next pending shards, in order, to idle workers."""

    def busy(self) -> bool: ...

    def collect(self) -> list[Done]:
        """Shards that have left their workers since the last call (never blocks)."""

    def close(self) -> None:
        """Tell the workers to exit once their shards are done; do not wait."""

    def join(self) -> None:
        """Wait for the workers to exit."""


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while a process starts: it inherits the mask; this process
    gets any that came meanwhile when the block ends."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Process:
    def __init__(self, group: ProcessGroup) -> None:
        ctx = group.ctx
        self.conn, child = ctx.Pipe()
        self.held = ctx.Array("i", 2, lock=False)
        self.proc = ctx.Process(
            target=worker.serve,
            args=(child, group.limits, group.events, group.stop, group.coordinator, self.held),
            name="pipeline-worker",
        )
        with _signals_blocked():
            self.proc.start()
        child.close()
        self.task: ShardTask | None = None
        self.used = False
        self.started = False


class ProcessGroup:
    """`size` worker processes, each running one shard at a time."""

    def __init__(
        self, ctx: Any, size: int, limits: SharedLimits, events: Any, stop: Any, coordinator: int
    ) -> None:
        self.ctx, self.limits, self.events, self.stop = ctx, limits, events, stop
        self.coordinator = coordinator
        self.workers = [_Process(self) for _ in range(size)]
        self.closed = False
        self.start_failures = 0

    def pids(self) -> list[int]:
        return [int(w.proc.pid or 0) for w in self.workers]

    def dispatch(self, settings: WorkerSettings, pending: deque[ShardTask]) -> None:
        for w in self.workers:
            if not pending:
                return
            if w.task is None and w.proc.is_alive():
                w.task, w.used = pending.popleft(), True
                with contextlib.suppress(OSError):  # a dead process: `collect` sees it
                    w.conn.send((settings, w.task))

    def busy(self) -> bool:
        return any(w.task is not None for w in self.workers)

    def collect(self) -> list[Done]:
        done: list[Done] = []
        for i, w in enumerate(self.workers):
            self._receive(w, done)
            if w.proc.is_alive() or self.closed:
                continue
            w.proc.join()
            if not w.started:
                self._failed_to_start(w)
            if w.task is not None:
                done.append(Done(w.task, died=_how(w.proc.exitcode), started=w.started))
            self._give_back(w.held)
            self.workers[i] = _Process(self)
        return done

    def _receive(self, w: _Process, done: list[Done]) -> None:
        """What the process has said: that it started (None), its shard's report or error."""
        while w.conn.poll():
            try:
                message = w.conn.recv()
            except (EOFError, OSError):
                return  # it died while answering: `collect` sees it
            if message is None:
                w.started = True
            elif w.task is not None:
                ok, value = message
                done.append(Done(w.task, report=value) if ok else Done(w.task, error=value))
                w.task = None

    def _failed_to_start(self, w: _Process) -> None:
        self.start_failures += 1
        if self.start_failures >= MAX_START_FAILURES:
            raise LocalError(
                f"worker processes exit as they start ({_how(w.proc.exitcode)}); "
                "check the installation (`python -m pipeline --version`) and run again with -v"
            )

    def _give_back(self, held: Any) -> None:
        """What a dead process held of the shared limits, back to the others."""
        limits = self.limits
        for _ in range(held[worker.HELD_SLOTS]):
            with contextlib.suppress(ValueError):
                limits.slots.release()
        if held[worker.HELD_SHARD]:
            with limits.busy_shards.get_lock():
                limits.busy_shards.value -= 1
        # The lock is held for microseconds at a time: if it stays taken for a second, the
        # dead process held it. Either way one release leaves it free.
        limits.lock.acquire(timeout=1.0)
        limits.lock.release()

    def close(self) -> None:
        """Processes that never got a shard are still importing, or idle: they hold nothing,
        so they are ended at once; the others exit when their shard is done."""
        self.closed = True
        for w in self.workers:
            if not w.used:
                w.proc.kill()
                continue
            with contextlib.suppress(OSError):
                w.conn.send(None)

    def join(self) -> None:
        if not self.closed:
            self.close()
        for w in self.workers:
            w.proc.join(JOIN_SECONDS)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join()
            w.conn.close()


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit code {exitcode}"


class ThreadGroup:
    """One background thread running one shard at a time, in this process."""

    def __init__(self, limits: SharedLimits, events: Any, stop: threading.Event) -> None:
        worker.init_local(limits, events, stop)
        self.events = events
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="shard")
        self.running: tuple[ShardTask, Future[ShardReport]] | None = None

    def dispatch(self, settings: WorkerSettings, pending: deque[ShardTask]) -> None:
        if self.running is None and pending:
            task = pending.popleft()
            future = self.executor.submit(worker.run_shard, settings, task)
            future.add_done_callback(lambda _: self.events.put(None))
            self.running = (task, future)

    def busy(self) -> bool:
        return self.running is not None

    def collect(self) -> list[Done]:
        if self.running is None or not self.running[1].done():
            return []
        task, future = self.running
        self.running = None
        error = future.exception()
        return [Done(task, error=error)] if error else [Done(task, report=future.result())]

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    def join(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        worker.close_local()  # the shards ran here: close what they built
