"""A worker process: runs one shard at a time on a small pool of threads.

The coordinator starts each process with `init_process(settings, limits, events, stop)`; the
process then builds its own resources (a thread pool, one `requests.Session` per thread, one
partner-token source) and runs `run_shard(task)` for each shard it is given. Only plain,
picklable values cross the process boundary: `WorkerSettings` and `ShardTask` in,
`ShardReport` out, small progress dicts on the `events` queue.

For each row: ask the shared limiter, call, classify, retry transient failures with backoff
(a `Retry-After` pauses the whole run), and record one outcome. When every row has one, the
result shard is written atomically. A shard stopped midway (Ctrl+C) writes nothing and is
run again by the next `run`.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import cardgenius, schema
from pipeline.client import CardGeniusClient, Endpoint, TokenSource, fetch_token, new_session
from pipeline.errors import CallError, PermanentError
from pipeline.ratelimit import Limiter, SharedLimits
from pipeline.retry import RetryPolicy
from pipeline.store import RunLayout, write_parquet_atomic

PROGRESS_INTERVAL = 0.5  # seconds between progress events from one process


@dataclass(frozen=True)
class WorkerSettings:
    endpoint: Endpoint
    policy: RetryPolicy
    threads: int
    """Threads in this process; each has its own Session."""
    root: Path
    """The run's output folder."""
    id_column: str
    mapping: tuple[tuple[str, tuple[str, ...]], ...]
    """API field -> input columns added up for it."""
    top_n: int

    @property
    def value_columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for _, columns in self.mapping for c in columns))


@dataclass(frozen=True)
class ShardTask:
    name: str
    retry_failed: bool = False
    """Keep the shard's existing outcomes and request only its `failed` rows again."""


@dataclass(frozen=True)
class ShardReport:
    name: str
    finished: bool
    counts: dict[str, int] = field(default_factory=dict)
    """Rows by final state; only for a finished shard."""
    requests: int = 0
    retries: int = 0
    retried_rows: int = 0
    """For retry_failed: rows requested again."""


class Interrupted(Exception):
    """The run is stopping; the row gets no outcome."""


_process: WorkerProcess | None = None


def init_process(settings: WorkerSettings, limits: SharedLimits, events: Any, stop: Any) -> None:
    """Pool initializer: build this process's resources once.

    Ctrl+C reaches every process of the terminal's group; only the coordinator acts on it
    (it sets `stop`), so the workers ignore SIGINT and finish their in-flight requests.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    init_local(settings, limits, events, stop)
    _watch_parent(stop)


def init_local(settings: WorkerSettings, limits: SharedLimits, events: Any, stop: Any) -> None:
    """Set up shard running in this process (the serial executor calls this directly)."""
    global _process
    _process = WorkerProcess(settings, Limiter(limits, stop), events, stop)


def run_shard(task: ShardTask) -> ShardReport:
    """Pool entry point: run one shard in this process."""
    if _process is None:
        raise RuntimeError("run_shard called before init_process")
    return _process.run_shard(task)


def _watch_parent(stop: Any) -> None:
    """If the coordinator dies (kill -9), stop sending requests within a second."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                stop.set()
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class WorkerProcess:
    """One process's threads, sessions and token; runs shards one at a time."""

    def __init__(self, settings: WorkerSettings, limiter: Limiter, events: Any, stop: Any):
        self.settings = settings
        self.limiter = limiter
        self.events = events
        self.stop = stop
        self.layout = RunLayout(settings.root)
        self.pool = ThreadPoolExecutor(settings.threads, thread_name_prefix="request")
        self.local = threading.local()
        endpoint = settings.endpoint
        self.tokens = TokenSource(endpoint, fetch_token) if endpoint.auth != "none" else None
        self.mapped = [api_field for api_field, _ in settings.mapping]
        self.derived = cardgenius.derived_fields(self.mapped, settings.top_n)
        self.result_schema = schema.result_schema(
            settings.id_column, settings.value_columns, self.derived
        )

    def client(self) -> CardGeniusClient:
        client: CardGeniusClient | None = getattr(self.local, "client", None)
        if client is None:
            endpoint = self.settings.endpoint
            client = CardGeniusClient(endpoint, new_session(endpoint), self.tokens)
            self.local.client = client
            self.local.rng = random.Random()
        return client

    def run_shard(self, task: ShardTask) -> ShardReport:
        rows = pq.read_table(self.layout.input_shard(task.name)).to_pylist()
        kept: dict[int, dict[str, Any]] = {}
        if task.retry_failed:
            for old in pq.read_table(self.layout.result_shard(task.name)).to_pylist():
                if old[schema.STATUS] != schema.FAILED:
                    kept[old[schema.ROW]] = old
        todo = [row for row in rows if row[schema.ROW] not in kept]
        outcomes = self._run_rows(task.name, todo)
        requests = sum(o[schema.ATTEMPTS] for o in outcomes.values())
        sent = sum(1 for o in outcomes.values() if o[schema.ATTEMPTS])
        stats = {"requests": requests, "retries": requests - sent, "retried_rows": len(todo)}
        if len(outcomes) < len(todo):  # stopped midway: the next run does the shard again
            return ShardReport(task.name, False, **stats)
        outcomes.update(kept)
        ordered = [outcomes[row[schema.ROW]] for row in rows]
        table = pa.Table.from_pylist(ordered, schema=self.result_schema)
        write_parquet_atomic(table, self.layout.result_shard(task.name))
        counts = Counter(row[schema.STATUS] for row in ordered)
        return ShardReport(task.name, True, dict(counts), **stats)

    def _run_rows(self, shard: str, rows: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """Outcomes by row; fewer than `rows` when the run stopped midway."""
        outcomes: dict[int, dict[str, Any]] = {}
        finished: queue.SimpleQueue[Future[dict[str, Any]]] = queue.SimpleQueue()
        submitted = 0
        for row in rows:
            if row[schema.INVALID] is not None:
                outcome = self._outcome(row, schema.INVALID_STATE, error=row[schema.INVALID])
                outcomes[row[schema.ROW]] = outcome
            else:
                future = self.pool.submit(self._request_row, row)
                future.add_done_callback(finished.put)
                submitted += 1
        fresh = Counter(o[schema.STATUS] for o in outcomes.values())
        last_sent = time.monotonic()
        for _ in range(submitted):
            try:
                outcome = finished.get().result()
            except Interrupted:
                continue
            outcomes[outcome[schema.ROW]] = outcome
            fresh[outcome[schema.STATUS]] += 1
            if time.monotonic() - last_sent >= PROGRESS_INTERVAL:
                self._send(shard, fresh)
                fresh, last_sent = Counter(), time.monotonic()
        self._send(shard, fresh)
        return outcomes

    def _send(self, shard: str, counts: Mapping[str, int]) -> None:
        if counts:
            self.events.put({"pid": os.getpid(), "shard": shard, "counts": dict(counts)})

    def _request_row(self, row: dict[str, Any]) -> dict[str, Any]:
        """Call the API for one row until it succeeds, fails for good, or runs out of attempts."""
        client = self.client()
        rng: random.Random = self.local.rng
        body = cardgenius.build_body(
            {
                api_field: tuple(row[c] for c in columns)
                for api_field, columns in self.settings.mapping
            }
        )
        policy = self.settings.policy
        attempts = 0
        while True:
            if self.stop.is_set() or not self.limiter.acquire():
                raise Interrupted
            attempts += 1
            try:
                answer = client.call(body)
            except CallError as exc:
                error = exc
            else:
                derived = cardgenius.derive(answer.cards, self.mapped, self.settings.top_n)
                state = schema.OK if answer.cards else schema.NO_CARDS
                return self._outcome(
                    row, state, answer.http_status, attempts, answer.latency_ms, derived=derived
                )
            finally:
                self.limiter.release()
            if isinstance(error, PermanentError) or not policy.should_retry(attempts):
                return self._outcome(
                    row, schema.FAILED, error.http_status, attempts, error=error.message
                )
            delay = policy.wait_after(attempts, error.retry_after, rng)
            if error.retry_after is not None:
                self.limiter.pause_for(delay)
            if self.stop.wait(delay):
                raise Interrupted

    def _outcome(
        self,
        row: Mapping[str, Any],
        status: str,
        http_status: int | None = None,
        attempts: int = 0,
        latency_ms: float | None = None,
        *,
        error: str | None = None,
        derived: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        outcome = {
            name: row[name]
            for name in (schema.ROW, self.settings.id_column, *self.settings.value_columns)
        }
        outcome.update(
            {
                schema.STATUS: status,
                schema.HTTP_STATUS: http_status,
                schema.ATTEMPTS: attempts,
                schema.LATENCY_MS: latency_ms,
                schema.ERROR: error,
            }
        )
        outcome.update(derived or {})
        return outcome
