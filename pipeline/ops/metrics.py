"""Prometheus metrics of a run, served at http://[metrics] host:port/metrics while it goes.

The coordinator already adds up every worker's events, so the metrics live there, in one
registry of its own (no multiprocess mode): counters fed by the events, gauges set on each
tick from the run-wide snapshot. Counters count this invocation, as the run's summary does, so
their last values equal the Summary's figures. Off unless `[metrics] port` is set; a port
that cannot be had is a config error (exit 2) raised before the run touches anything.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from pipeline.config import MetricsConfig
from pipeline.errors import ConfigError
from pipeline.view.progress import RunSnapshot, WorkerEvent

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Seconds; from a fast local mock to the API's 30 s timeout."""


class RunMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.rows = Counter(
            "pipeline_rows", "Rows that reached a final state", ["state"], registry=r
        )
        self.requests = Counter(
            "pipeline_requests",
            "Requests answered, by result: ok (a usable answer) or the error kind",
            ["status"],
            registry=r,
        )
        self.retries = Counter("pipeline_retries", "Requests that were retries", registry=r)
        self.throttled = Counter("pipeline_throttled", "HTTP 429 answers", registry=r)
        self.latency = Histogram(
            "pipeline_request_latency_seconds",
            "Time from sending a request to its answer",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rate = Gauge(
            "pipeline_rate_limit", "Requests/s in force for the run; 0 = no limit", registry=r
        )
        self.in_flight = Gauge("pipeline_in_flight", "Requests in flight now", registry=r)
        self.paused = Gauge("pipeline_paused", "1 while requests are held", registry=r)
        self.rows_total = Gauge("pipeline_rows_in_run", "Rows in the run", registry=r)
        self.rows_done = Gauge(
            "pipeline_rows_done", "Rows with an outcome, earlier invocations included", registry=r
        )
        self.shards_done = Gauge("pipeline_shards_done", "Shards finished", registry=r)
        self.shards_total = Gauge("pipeline_shards", "Shards in the run", registry=r)
        self.eta = Gauge("pipeline_eta_seconds", "Seconds to go at the recent rate", registry=r)
        self.eta.set(math.nan)

    def event(self, event: WorkerEvent) -> None:
        e = event.figures
        for state, n in e.states.items():
            self.rows.labels(state).inc(n)
        errors = 0
        for kind, n in e.errors.items():
            self.requests.labels(kind).inc(n)
            errors += n
        if e.requests > errors:
            self.requests.labels("ok").inc(e.requests - errors)
        self.retries.inc(e.retries)
        self.throttled.inc(e.errors.get("http_429", 0))
        for ms in event.latencies_ms:
            self.latency.observe(ms / 1000.0)

    def tick(
        self,
        snapshot: RunSnapshot,
        *,
        done: int,
        total: int,
        eta: float | None,
        shards: tuple[int, int],
    ) -> None:
        self.rate.set(snapshot.current_rate)
        self.in_flight.set(snapshot.in_flight)
        self.paused.set(1 if snapshot.held or snapshot.paused_for > 0 else 0)
        self.rows_done.set(done)
        self.rows_total.set(total)
        self.eta.set(math.nan if eta is None else eta)
        self.shards_done.set(shards[0])
        self.shards_total.set(shards[1])


@contextlib.contextmanager
def serve(config: MetricsConfig) -> Iterator[RunMetrics]:
    """The run's metrics, served while the block runs."""
    metrics = RunMetrics()
    try:
        server, thread = start_http_server(config.port, config.host, metrics.registry)
    except OSError as exc:
        raise ConfigError(
            f"[metrics] port = {config.port}: cannot serve metrics on "
            f"{config.host}:{config.port} ({exc.strerror or exc}); choose another port, or 0 "
            "for no metrics"
        ) from None
    try:
        yield metrics
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
