"""`pipeline plan`: the load a batch will put on the partner's API, worked out before sending.

Owns the planning figures: rows, invalid rows and unique request bodies of the input (streamed,
never loaded whole) and the arithmetic from those and an optional probe (`probe.py`) to
requests/s, connections, bandwidth, data per day and duration; `report.py` turns them into
the report, with a notification text for the partner's DevOps team.

The arithmetic (`sustained_rps`, `burst_rps`, `load_figures`) is pure, on plain numbers.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import polars as pl
import pyarrow as pa

from pipeline.api import cardgenius
from pipeline.api.endpoint import identity_text
from pipeline.config import Config, MockConfig, cache_dir
from pipeline.configrules import parse_age
from pipeline.errors import ConfigError

# The reader and row checker of a run, so that plan cleans and rejects exactly as a run does.
from pipeline.inputs.readers import read_batches
from pipeline.inputs.validate import RowChecker
from pipeline.plan.probe import ProbeResult, mean, run_probe
from pipeline.plan.report import render_report
from pipeline.state.answers import body_keys, key_series
from pipeline.state.cache import STORE_FILE, AnswerStore
from pipeline.traffic.windows import duration_s

log = logging.getLogger("pipeline")

ASSUMED_REQUEST_BYTES = 600.0
"""A body with every field (docs/cardgenius-api.md); it also covers a smaller one's headers."""
ASSUMED_RESPONSE_BYTES = 35_000.0
"""Uncompressed answer for 15 cards, as the mock sends it."""
ASSUMED_RESPONSE_WIRE_BYTES = 5_000.0
"""The same answer gzip-compressed, as it travels."""
_MIN_LATENCY_S = 0.001  # an instant mock would give infinite rates
_COMPACT_EVERY = 64  # batches of body hashes kept before they are merged


@dataclass(frozen=True)
class InputFacts:
    rows: int
    invalid: int
    unique_bodies: int
    """Distinct request bodies among the valid rows."""
    samples: tuple[Mapping[str, float], ...] = ()
    """The first few distinct bodies, for a probe."""
    stored_bodies: int = 0
    """Distinct bodies with an answer in the store that a run would reuse (`[cache] max_age`)."""
    stored_rows: int = 0
    """Valid rows with such a body."""

    @property
    def valid(self) -> int:
        return self.rows - self.invalid


@dataclass(frozen=True)
class Load:
    """What the arithmetic needs, as plain numbers (seconds, bytes, requests/s; 0 = none)."""

    requests: int
    rate_limit: float
    max_workers: int
    latency_s: float
    """Mean latency of one request."""
    fastest_latency_s: float
    request_bytes: float
    response_bytes: float
    response_wire_bytes: float


@dataclass(frozen=True)
class Figures:
    sustained_rps: float
    burst_rps: float
    connections: int
    outbound_bps: float
    """Bytes per second sent, at the sustained rate."""
    inbound_wire_bps: float
    inbound_bps: float
    """Uncompressed."""
    day_out_bytes: float
    day_in_bytes: float
    """On the wire, in the batch's first 24 hours at the sustained rate."""
    total_out_bytes: float
    total_in_bytes: float
    duration_s: float
    windows_s: float | None = None
    """Duration through the partner windows, starting now; None without windows."""


def sustained_rps(rate_limit: float, max_workers: int, latency_s: float) -> float:
    """Requests/s the run keeps up: `max_workers` in flight, each taking `latency_s` (Little's
    law), held to `rate_limit` when there is one (0 = none)."""
    bound = max_workers / max(latency_s, _MIN_LATENCY_S)
    return min(rate_limit, bound) if rate_limit > 0 else bound


def burst_rps(rate_limit: float, max_workers: int, fastest_latency_s: float) -> float:
    """The most requests any one second can hold: the limiter spaces requests evenly, so at
    most `rate_limit + 1`; without a limit, every connection at the fastest latency."""
    bound = max_workers / max(fastest_latency_s, _MIN_LATENCY_S)
    return min(rate_limit + 1, bound) if rate_limit > 0 else bound


def load_figures(load: Load) -> Figures:
    rps = sustained_rps(load.rate_limit, load.max_workers, load.latency_s)
    duration = load.requests / rps if load.requests else 0.0
    day = min(86_400.0, duration)  # a batch shorter than a day sends all of it that day
    return Figures(
        sustained_rps=rps,
        burst_rps=burst_rps(load.rate_limit, load.max_workers, load.fastest_latency_s),
        connections=load.max_workers,
        outbound_bps=rps * load.request_bytes,
        inbound_wire_bps=rps * load.response_wire_bytes,
        inbound_bps=rps * load.response_bytes,
        day_out_bytes=rps * load.request_bytes * day,
        day_in_bytes=rps * load.response_wire_bytes * day,
        total_out_bytes=load.requests * load.request_bytes,
        total_in_bytes=load.requests * load.response_wire_bytes,
        duration_s=duration,
    )


def plan(
    config: Config,
    probe: int = 0,
    *,
    clock: Callable[[], float] = time.perf_counter,
    now: datetime | None = None,
) -> str:
    """The plan report for `config`'s input; `probe` real requests first (0 = none); `now`:
    when the batch would start (the partner windows), default the present."""
    if probe < 0:
        raise ConfigError(f"--probe {probe}: must be 0 (no probe) or more")
    log.info("Reading %s ...", config.input.path)
    facts = scan_input(config, samples=min(probe, 100))
    result = None
    if probe and facts.samples:
        log.info("Probing the API with %d request(s) ...", probe)
        result = run_probe(config, facts.samples, probe, clock=clock)
    elif probe:
        result = ProbeResult(0, (), (), (), (), errors=("skipped: no valid row to send",))
    load, assumed = make_load(config, facts, result)
    fig = load_figures(load)
    start = now or datetime.now(timezone.utc)
    windows = config.processing.windows
    if windows:
        capacity = sustained_rps(0.0, load.max_workers, load.latency_s)
        fig = replace(
            fig, windows_s=duration_s(windows, load.requests, capacity, load.rate_limit, start)
        )
    return render_report(config, facts, result, load, fig, assumed, start)


def make_load(
    config: Config, facts: InputFacts, probe: ProbeResult | None
) -> tuple[Load, frozenset[str]]:
    """The arithmetic's inputs, and which of them are assumptions ("latency", "size")."""
    p = config.processing
    if p.dedupe_requests:
        requests = facts.unique_bodies - facts.stored_bodies
    else:
        requests = facts.valid - facts.stored_rows
    assumed: set[str] = set()
    if probe and probe.latencies_ms:
        lat = probe.latencies_ms
        latency, fastest = sum(lat) / len(lat) / 1000.0, min(lat) / 1000.0
    else:
        m = config.mock if config.api.mock else MockConfig()  # the mock models the live API
        latency, fastest = m.latency_ms / 1000.0, max(m.latency_ms - m.jitter_ms, 0.0) / 1000.0
        assumed.add("latency")
    if probe and probe.response_bytes:
        sizes = (mean(probe.request_bytes), mean(probe.response_bytes))
        wire = mean(probe.response_wire_bytes)
    else:
        sizes, wire = (ASSUMED_REQUEST_BYTES, ASSUMED_RESPONSE_BYTES), ASSUMED_RESPONSE_WIRE_BYTES
        assumed.add("size")
    load = Load(
        requests=requests,
        rate_limit=p.rate_limit,
        max_workers=p.max_workers,
        latency_s=latency,
        fastest_latency_s=fastest,
        request_bytes=sizes[0],
        response_bytes=sizes[1],
        response_wire_bytes=wire,
    )
    return load, frozenset(assumed)


# --- the input


def scan_input(config: Config, samples: int = 0) -> InputFacts:
    """Rows, invalid rows and distinct request bodies of the input, in bounded memory.

    Rows are read and checked in batches by a run's own reader and checker (readers.py and
    validate.py: same value cleaning, same invalid rows, repeated ids included). Each valid
    row's body is known by the key a run gives it (`answers.body_keys`: the hash of the bytes
    that are sent), kept in 16 bytes per distinct body.
    """
    mapping = list(config.request.items())
    values = list(config.value_columns)
    id_column = config.input.id_column
    checker = RowChecker(id_column, values)
    hashes: list[pl.Series] = []
    stored: list[pl.Series] = []
    stored_rows = 0
    kept: dict[int, Mapping[str, float]] = {}
    max_age = parse_age(config.cache.max_age)
    batches = read_batches(config.input.path, [id_column, *values], config.input.sheet or None)
    with contextlib.closing(batches), _store(config) as store:
        for batch in batches:
            checked = checker.check(batch)
            keys = body_keys(checked, mapping)
            hashes.append(key_series(keys).drop_nulls().unique())
            if len(hashes) > _COMPACT_EVERY:
                hashes = [pl.concat(hashes).unique()]
            if store is not None:
                found = store.fresh(list({k for k in keys if k is not None}), max_age)
                stored_rows += sum(k in found for k in keys)
                stored.append(key_series(list(found)))
            if len(kept) < samples:
                _keep_samples(checked, mapping, keys, kept, samples)
    unique = pl.concat(hashes).n_unique() if hashes else 0
    stored_bodies = pl.concat(stored).n_unique() if stored else 0
    return InputFacts(
        checker.rows, checker.invalid, unique, tuple(kept.values()), stored_bodies, stored_rows
    )


@contextlib.contextmanager
def _store(config: Config) -> Iterator[AnswerStore | None]:
    """The answer store a run of `config` would use; None when there is none yet."""
    path = cache_dir(config) / STORE_FILE
    if not path.exists():
        yield None
        return
    store = AnswerStore(path, identity_text(config))
    try:
        yield store
    finally:
        store.close()


def _keep_samples(
    checked: pa.Table,
    mapping: list[tuple[str, tuple[str, ...]]],
    keys: list[int | None],
    kept: dict[int, Mapping[str, float]],
    samples: int,
) -> None:
    """The first distinct bodies, for a probe."""
    for i, key in enumerate(keys):
        if len(kept) >= samples:
            return
        if key is not None and key not in kept:
            row = {c: checked.column(c)[i].as_py() for _, cols in mapping for c in cols}
            kept[key] = cardgenius.build_body(
                {f: tuple(row[c] for c in cols) for f, cols in mapping}
            )
