"""A worker process: runs one shard at a time on a small pool of request threads.

The coordinator starts each process with `init_process(limits, events, stop)` as early as it
can, so that the process imports its modules while the coordinator shards the input. The
process runs `run_shard(settings, task)` for each shard it is given and builds its resources
(a thread pool, one `requests.Session` per thread, one partner-token source) on the first.
Only plain, picklable values cross the process boundary: `WorkerSettings` and `ShardTask` in,
`ShardReport` out, `WorkerEvent`s on the `events` queue.

A shard is run by a `ShardRun` (run/shardrun.py) on lanes: each request thread takes a row, asks
the shared limiter, makes the call and records the outcome under the shard's lock; the
shard's own thread checkpoints and reports. The run's `stop` is read from a local copy
(`_local_view`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from pipeline.api.classify import Outcome, Quota
from pipeline.imports import skip_pandas
from pipeline.run.process import WorkerProcess
from pipeline.run.shardrun import ShardRun
from pipeline.run.tasks import ShardReport, ShardTask, WorkerSettings
from pipeline.traffic.limiter import Limiter, Permit
from pipeline.traffic.shared import SharedLimits

ORPHAN_GRACE_SECONDS = 1.0  # for in-flight calls to end and be checkpointed
GIL_SWITCH_SECONDS = 0.02
STOP_POLL_SECONDS = 0.05
DIES_ON_ENV = "PIPELINE_TEST_WORKER_DIES_ON"
"""Test hook, for the tests of worker replacement only: a worker process given the shard of
this name kills itself with SIGKILL before running it, as the OOM killer would; "start":
every worker process does so as it starts."""
MEMORY_ENV = "PIPELINE_TEST_WORKER_MEMORY"
"""Test hook, for the tests of a worker out of memory only: a worker process given the shard
of this name may not take more address space than it holds then (RLIMIT_AS), as on a machine
whose memory is used up: its next allocation from the system fails (MemoryError)."""
HELD_SLOTS, HELD_SHARD = 0, 1
"""Indexes into a process's `held` array: request slots it holds, 1 while it runs a shard."""


@dataclass
class _Shared:
    limits: SharedLimits
    events: Any
    stop: Any
    process: WorkerProcess | None = None
    held: Any = None


_shared: _Shared | None = None


def serve(
    conn: Any, limits: SharedLimits, events: Any, stop: Any, coordinator: int, held: Any
) -> None:
    """A worker process's life: None on `conn` once it has started, then (settings, task)
    pairs from it, one at a time, each answered with (True, report) or (False, the
    exception); None or a closed pipe ends it.

    The coordinator starts the process with SIGINT and SIGTERM blocked, so that a Ctrl+C while
    it is still importing cannot print a traceback; `init_process` ignores them, then
    unblocks them.
    """
    if os.environ.get(DIES_ON_ENV) == "start":
        os.kill(os.getpid(), signal.SIGKILL)
    init_process(limits, events, stop, coordinator)
    assert _shared is not None
    _shared.held = held
    conn.send(None)  # started: a death from now on is the shard's doing
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        settings, task = message
        if os.environ.get(DIES_ON_ENV) == task.name:
            os.kill(os.getpid(), signal.SIGKILL)
        if os.environ.get(MEMORY_ENV) == task.name:
            _no_more_memory()
        try:
            reply: tuple[bool, object] = (True, run_shard(settings, task))
        except BaseException as exc:  # the coordinator decides; this process carries on
            reply = (False, _picklable(exc))
        try:
            conn.send(reply)
            events.put(None)  # wakes the coordinator's loop
        except BaseException:
            # Out of memory (no thread for the queue, no bytes to pickle), or the coordinator
            # gone: end without a traceback. The coordinator sees the reply or the death and
            # says what it means, in one line.
            os._exit(1)


def _no_more_memory() -> None:
    import resource

    with open("/proc/self/statm") as statm:  # the address space, in pages
        held = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (held, resource.getrlimit(resource.RLIMIT_AS)[1]))


def _picklable(exc: BaseException) -> BaseException:
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        kind = MemoryError if isinstance(exc, MemoryError) else RuntimeError
        return kind(f"{type(exc).__name__}: {exc}")
    return exc


def init_process(limits: SharedLimits, events: Any, stop: Any, coordinator: int) -> None:
    """A worker process's set-up: the run's shared state, and the modules a shard needs.

    Ctrl+C and SIGTERM reach every process of the group (a terminal, systemd, `docker stop`,
    `timeout`); only the coordinator acts on them (it sets `stop`), so the workers ignore
    them and finish their in-flight requests.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    skip_pandas()
    # Up to 100 request threads share the GIL: with a longer slice than the default 5 ms, a
    # thread mostly finishes parsing its answer before another takes it (BENCHMARKS.md).
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    init_local(limits, events, stop)
    _watch_parent(stop, coordinator)


def init_local(limits: SharedLimits, events: Any, stop: Any) -> None:
    """Set up shard running in this process (the serial executor calls this directly)."""
    global _shared
    _shared = _Shared(limits, events, _local_view(stop))


def close_local() -> None:
    """End shard running in this process (the serial executor, when the run ends): close what
    its shards built, so the process is left as it was."""
    global _shared
    if _shared is not None and _shared.process is not None:
        _shared.process.close()
    _shared = None


def _local_view(stop: Any) -> threading.Event:
    """This process's copy of the run's `stop`, set within `STOP_POLL_SECONDS` of it.

    Every request asks whether the run is stopping; a `multiprocessing.Event` answers with
    its lock, which is shared by every thread of every process (contended at 200 threads),
    a `threading.Event` with a plain read. One thread looks at the shared event for all.

    It polls: a thread asleep in the shared event's `wait()` is counted as a sleeper that
    `set()` must see wake, so once its process has exited (a closed pool, a killed worker),
    the next `set()` anywhere would block forever.
    """
    if isinstance(stop, threading.Event):
        return stop
    local = threading.Event()

    def mirror() -> None:
        while not stop.is_set():
            time.sleep(STOP_POLL_SECONDS)
        local.set()

    threading.Thread(target=mirror, name="stop-mirror", daemon=True).start()
    return local


def run_shard(settings: WorkerSettings, task: ShardTask) -> ShardReport:
    """Pool entry point: run one shard in this process."""
    if _shared is None:
        raise RuntimeError("run_shard called before init_process")
    if _shared.process is None:  # every task of a pool carries the same settings
        limiter = (
            Limiter(_shared.limits, _shared.stop)
            if _shared.held is None
            else AccountedLimiter(_shared.limits, _shared.stop, _shared.held)
        )
        _shared.process = WorkerProcess(settings, limiter, _shared.events, _shared.stop)
    return ShardRun(_shared.process, task).run()


def _watch_parent(stop: Any, parent: int) -> None:
    """If the coordinator dies (kill -9), stop sending requests within a second and exit.

    The pool's threads check `stop` before every request; in-flight calls get a moment to end
    and be checkpointed before the process exits. The watch goes on after `stop` is set (by
    the coordinator or another orphan), so an orphan never lingers idle. `parent` is the
    coordinator's pid as it gave it: a worker still starting when the coordinator died has
    another parent already.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        stop.set()
        time.sleep(ORPHAN_GRACE_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class AccountedLimiter(Limiter):
    """A limiter that keeps count, in `held`, of what this process holds of the shared limits.

    Counted after a slot is taken and before it is given back: a death between the two loses
    the coordinator one slot (the run goes on with one fewer in flight), never gives one too
    many (the partner's limit holds).
    """

    def __init__(self, shared: SharedLimits, stop: Any, held: Any) -> None:
        super().__init__(shared, stop)
        self._held = held
        self._held_lock = threading.Lock()  # the process's request threads share `held`

    def acquire(self, fresh: bool = True) -> Permit | None:
        permit = super().acquire(fresh)
        if permit is not None:
            with self._held_lock:
                self._held[HELD_SLOTS] += 1
        return permit

    def release(
        self, permit: Permit, outcome: Outcome | None = None, quota: Quota | None = None
    ) -> None:
        with self._held_lock:
            self._held[HELD_SLOTS] -= 1
        super().release(permit, outcome, quota)

    def shard_started(self) -> None:
        super().shard_started()
        self._held[HELD_SHARD] = 1

    def shard_ended(self) -> None:
        self._held[HELD_SHARD] = 0
        super().shard_ended()
