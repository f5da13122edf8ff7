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

from pipeline.imports import skip_pandas
from pipeline.run.process import WorkerProcess
from pipeline.run.shardrun import ShardRun
from pipeline.run.tasks import ShardReport, ShardTask, WorkerSettings
from pipeline.traffic.limiter import Limiter, SharedLimits

ORPHAN_GRACE_SECONDS = 1.0  # for in-flight calls to end and be checkpointed
GIL_SWITCH_SECONDS = 0.02
STOP_POLL_SECONDS = 0.05


@dataclass
class _Shared:
    limits: SharedLimits
    events: Any
    stop: Any
    process: WorkerProcess | None = None


_shared: _Shared | None = None


def init_process(limits: SharedLimits, events: Any, stop: Any, coordinator: int) -> None:
    """Pool initializer: the run's shared state, and the modules a shard needs.

    Ctrl+C reaches every process of the terminal's group; only the coordinator acts on it
    (it sets `stop`), so the workers ignore SIGINT and finish their in-flight requests.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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


def ready() -> None:
    """A task that does nothing: submitting one makes the pool start a process."""


def run_shard(settings: WorkerSettings, task: ShardTask) -> ShardReport:
    """Pool entry point: run one shard in this process."""
    if _shared is None:
        raise RuntimeError("run_shard called before init_process")
    if _shared.process is None:  # every task of a pool carries the same settings
        _shared.process = WorkerProcess(
            settings, Limiter(_shared.limits, _shared.stop), _shared.events, _shared.stop
        )
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
