"""`pipeline plan`: the load a batch will put on the partner's API, worked out before sending.

Owns the planning figures and their report: rows, invalid rows and unique request bodies of
the input (streamed, never loaded whole); an optional probe of N real requests for latency
and response size; and the arithmetic from those to requests/s, connections, bandwidth, data
per day and duration, with a notification text for the partner's DevOps team.

The arithmetic (`sustained_rps`, `burst_rps`, `load_figures`) is pure, on plain numbers.
Every figure says where it comes from: "(measured)" by the probe or "(assumed)" otherwise.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import operator
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from pipeline import cardgenius, runinfo
from pipeline.client import (
    USER_AGENT,
    CardGeniusClient,
    Endpoint,
    TokenSource,
    fetch_token,
    new_session,
    partner_urls,
)
from pipeline.config import Config, MockConfig
from pipeline.errors import CallError, ConfigError
from pipeline.progress import format_duration, percentile
from pipeline.schema import INVALID

# shard.py's reader and row checker, so that plan cleans and rejects exactly as a run does.
from pipeline.shard import _read, _RowChecker

log = logging.getLogger("pipeline")

ASSUMED_REQUEST_BYTES = 600.0
"""A body with every field (cardgenius-api.md), which also covers the headers of a smaller one."""
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

    @property
    def valid(self) -> int:
        return self.rows - self.invalid


@dataclass(frozen=True)
class ProbeResult:
    sent: int
    latencies_ms: tuple[float, ...]
    """Of the answered requests."""
    request_bytes: tuple[int, ...]
    response_bytes: tuple[int, ...]
    """Uncompressed size of each 200 answer."""
    response_wire_bytes: tuple[int, ...]
    """Size of each 200 answer as it travelled (gzip-compressed when the server compressed)."""
    errors: tuple[str, ...] = ()


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


def plan(config: Config, probe: int = 0, *, clock: Callable[[], float] = time.perf_counter) -> str:
    """The plan report for `config`'s input; `probe` real requests first (0 = none)."""
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
    return render_report(config, facts, result, load, load_figures(load), assumed)


def make_load(
    config: Config, facts: InputFacts, probe: ProbeResult | None
) -> tuple[Load, frozenset[str]]:
    """The arithmetic's inputs, and which of them are assumptions ("latency", "size")."""
    p = config.processing
    requests = facts.unique_bodies if p.dedupe_requests else facts.valid
    assumed: set[str] = set()
    if probe and probe.latencies_ms:
        lat = probe.latencies_ms
        latency, fastest = sum(lat) / len(lat) / 1000.0, min(lat) / 1000.0
    else:
        m = config.mock if config.api.mock else MockConfig()  # the mock models the live API
        latency, fastest = m.latency_ms / 1000.0, max(m.latency_ms - m.jitter_ms, 0.0) / 1000.0
        assumed.add("latency")
    if probe and probe.response_bytes:
        sizes = (_mean(probe.request_bytes), _mean(probe.response_bytes))
        wire = _mean(probe.response_wire_bytes)
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


def _mean(values: Sequence[int]) -> float:
    return sum(values) / len(values) if values else 0.0


# --- the input


def scan_input(config: Config, samples: int = 0) -> InputFacts:
    """Rows, invalid rows and distinct request bodies of the input, in bounded memory.

    Rows are read and checked in batches by shard.py's own reader and checker (same value
    cleaning, same invalid rows, repeated ids included). Each valid row's body is computed as
    `cardgenius.build_body` would and kept as a 64-bit hash: 8 bytes per distinct body.
    """
    mapping = list(config.request.items())
    values = list(config.value_columns)
    id_column = config.input.id_column
    checker = _RowChecker(id_column, values)
    hashes: list[pl.Series] = []
    kept: dict[tuple[tuple[str, float], ...], Mapping[str, float]] = {}
    batches = _read(config.input.path, [id_column, *values], config.input.sheet or None)
    with contextlib.closing(batches):
        for batch in batches:
            frame = pl.DataFrame(pl.from_arrow(checker.check(batch)))
            valid = frame.filter(pl.col(INVALID).is_null())
            if not valid.height:
                continue
            totals = _body_totals(valid, mapping)
            hashes.append(totals.hash_rows().unique())
            if len(hashes) > _COMPACT_EVERY:
                hashes = [pl.concat(hashes).unique()]
            for row in totals.head(samples - len(kept)).iter_rows(named=True):
                body = cardgenius.build_body({k: (v,) for k, v in row.items()})
                kept.setdefault(tuple(sorted(body.items())), body)
    unique = pl.concat(hashes).n_unique() if hashes else 0
    return InputFacts(checker.rows, checker.invalid, unique, tuple(kept.values()))


def _body_totals(valid: pl.DataFrame, mapping: list[tuple[str, tuple[str, ...]]]) -> pl.DataFrame:
    """One column per API field: the body's value, as `build_body` makes it."""
    # Added left to right, as Python's sum() does, so the floats come out identical.
    totals = valid.select(
        functools.reduce(operator.add, [pl.col(c) for c in columns]).alias(field)
        for field, columns in mapping
    )
    for name in totals.columns:
        column = totals[name]
        fractional = (column != column.floor()).arg_true()
        if len(fractional):  # Python's round(), not polars': they differ on halves like 2.675
            exact = [round(v, 2) for v in column.gather(fractional).to_list()]
            totals = totals.with_columns(column.scatter(fractional, exact))
    return totals


# --- the probe


def run_probe(
    config: Config,
    bodies: Sequence[Mapping[str, float]],
    count: int,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> ProbeResult:
    """Send `count` requests one at a time (bodies in turn), spaced to `rate_limit` if set."""
    spacing = 1.0 / config.processing.rate_limit if config.processing.rate_limit > 0 else 0.0
    sizes: list[tuple[int, int, int]] = []
    latencies: list[float] = []
    errors: list[str] = []
    with _endpoint(config) as endpoint:
        session = new_session(endpoint)
        session.hooks["response"].append(functools.partial(_record_sizes, sizes))
        tokens = TokenSource(endpoint, fetch_token) if endpoint.auth == "partner-token" else None
        client = CardGeniusClient(endpoint, session, tokens, clock=clock)
        last = -math.inf
        try:
            for i in range(count):
                wait = last + spacing - clock()
                if wait > 0:
                    sleep(wait)
                last = clock()
                try:
                    latencies.append(client.call(bodies[i % len(bodies)]).latency_ms)
                except CallError as exc:
                    errors.append(exc.message)
        finally:
            session.close()
    return ProbeResult(
        sent=count,
        latencies_ms=tuple(latencies),
        request_bytes=tuple(s[0] for s in sizes),
        response_bytes=tuple(s[1] for s in sizes),
        response_wire_bytes=tuple(s[2] for s in sizes),
        errors=tuple(errors),
    )


def _record_sizes(sizes: list[tuple[int, int, int]], response: Any, *args: Any, **kw: Any) -> None:
    """A requests response hook: (request, response, response on the wire) bytes of a 200."""
    if response.status_code != 200 or "/token" in response.url:
        return
    body = response.content  # reads (and decompresses) the answer
    length = response.headers.get("Content-Length", "")
    wire = int(length) if length.isdigit() else int(response.raw.tell())
    request = response.request
    head = f"{request.method} {request.path_url} HTTP/1.1\r\nHost: {response.url}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items()) + "\r\n"
    sizes.append((len(head) + len(request.body or b""), len(body), wire))


@contextlib.contextmanager
def _endpoint(config: Config) -> Iterator[Endpoint]:
    """Where the probe calls: the configured API, or a mock started for it (`mock = true`)."""
    api = config.api
    key = os.environ.get(api.key_env, "")
    with contextlib.ExitStack() as stack:
        url = api.url
        if api.mock:
            from pipeline.mockapi import start_mock_process

            settings = runinfo.mock_settings(config)
            url = stack.enter_context(start_mock_process(settings)).base_url + "/cg/api/pro"
            key = key or settings.api_key
        token_url = ""
        if api.auth == "partner-token":
            if not key:
                raise ConfigError(f"[api] key_env: environment variable {api.key_env} is not set")
            url, token_url = partner_urls(url)
        yield Endpoint(
            url=url,
            auth=api.auth,
            token_url=token_url,
            api_key=key,
            timeout=api.timeout,
            connect_timeout=api.connect_timeout,
            verify=api.ca_bundle or True,
        )


# --- the report


def render_report(
    config: Config,
    facts: InputFacts,
    probe: ProbeResult | None,
    load: Load,
    fig: Figures,
    assumed: frozenset[str],
) -> str:
    """The plan as text: input, probe, load, and the notification for the partner."""
    lines = [f"Plan for {config.input.path}", "", "Input"]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<24}{value}")

    per = "distinct request body" if config.processing.dedupe_requests else "valid row"
    row("rows", f"{facts.rows:,}")
    row("invalid rows", f"{facts.invalid:,} (never sent)")
    row("unique request bodies", f"{facts.unique_bodies:,} (of {facts.valid:,} valid rows)")
    row("requests to send", f"{load.requests:,} (one per {per}; retries come on top)")
    if probe is not None:
        _probe_rows(row, lines, probe, config)
    _load_rows(row, lines, load, fig, assumed)
    if assumed:
        lines.append("  (assumed) figures: run `pipeline plan --probe 20` to measure them.")
    rule = "-" * 72
    lines += ["", "Notification for the partner's DevOps team:", rule]
    lines += [notification_text(config, facts, load, fig, assumed), rule]
    return "\n".join(lines)


def _load_rows(
    row: Callable[[str, str], None],
    lines: list[str],
    load: Load,
    fig: Figures,
    assumed: frozenset[str],
) -> None:
    lat, size = _tag("latency" in assumed), _tag("size" in assumed)
    limited = _limited(load, fig)
    how = "= rate_limit" if limited else f"= max_workers / mean latency {lat}"
    burst = "rate_limit + 1"
    if fig.burst_rps != load.rate_limit + 1:
        burst = f"max_workers / fastest latency {lat}"
    moved = size if limited or size == lat else _tag(True)  # bytes x rate: assumed if either is
    lines += ["", f"Load at the configured limits ({_limits(load)})"]
    row("latency", f"{load.latency_s * 1000:,.0f} ms mean {lat}")
    row("request size", f"{_bytes(load.request_bytes)} {size}")
    row(
        "response size",
        f"{_bytes(load.response_bytes)}, gzip {_bytes(load.response_wire_bytes)} {size}",
    )
    row("requests/s sustained", f"{fig.sustained_rps:,.1f} {how}")
    row("requests/s at burst", f"{fig.burst_rps:,.1f} in any one second = {burst}")
    row("concurrent connections", f"{fig.connections} (max_workers)")
    row("outbound bandwidth", f"{_rate(fig.outbound_bps)} {moved}")
    row("inbound bandwidth", f"{_rate(fig.inbound_wire_bps)} gzip-compressed {moved}")
    row("", f"{_rate(fig.inbound_bps)} uncompressed {moved}")
    row("data per day", f"{_bytes(fig.day_in_bytes)} in, {_bytes(fig.day_out_bytes)} out {moved}")
    row(
        "data for the batch",
        f"{_bytes(fig.total_in_bytes)} in, {_bytes(fig.total_out_bytes)} out {size}",
    )
    duration = "" if limited else f" {lat}"
    row("expected duration", f"{_duration(fig.duration_s)}{duration}, before retries")


def _probe_rows(
    row: Callable[[str, str], None], lines: list[str], probe: ProbeResult, config: Config
) -> None:
    answered = len(probe.latencies_ms)
    if not probe.sent:
        lines += ["", f"Probe: {'; '.join(probe.errors)}"]
        return
    lines += ["", f"Probe: {probe.sent} request(s) to {_target(config)}, {answered} answered"]
    if answered:
        ordered = sorted(probe.latencies_ms)
        p50, p95 = (percentile(ordered, q) or 0.0 for q in (0.5, 0.95))
        row("latency", f"p50 {p50:,.0f} ms, p95 {p95:,.0f} ms (measured)")
    if probe.response_bytes:
        raw, wire = _mean(probe.response_bytes), _mean(probe.response_wire_bytes)
        row("response size", f"{_bytes(raw)} uncompressed, {_bytes(wire)} on the wire (measured)")
    if probe.errors:
        row("errors", f"{len(probe.errors)}, first: {probe.errors[0]}")


def notification_text(
    config: Config, facts: InputFacts, load: Load, fig: Figures, assumed: frozenset[str]
) -> str:
    """A message to send the partner before the batch; <...> are for the sender to fill."""
    r = config.retry
    limited = _limited(load, fig)
    rate_est = " (estimate)" if "latency" in assumed and not limited else ""
    est = " (estimate)" if rate_est or "size" in assumed else ""
    if load.rate_limit > 0:
        rate = (
            f"at most {load.rate_limit:g} requests/s, evenly spaced (never more than "
            f"{fig.burst_rps:,.0f} in any one second)"
        )
    else:
        rate = (
            f"no fixed rate cap; about {fig.sustained_rps:,.0f} requests/s{rate_est}, bounded by "
            f"{load.max_workers} requests in flight at once"
        )
    return "\n".join(
        [
            f"Subject: Planned batch on the CardGenius API: {load.requests:,} requests",
            "",
            "Hello,",
            "",
            f"We plan to run a batch of requests against the CardGenius API ({_target(config)})"
            " and would like to let you know the load to expect:",
            "",
            f"- Start: <date, time and time zone>; expected duration "
            f"{_duration(fig.duration_s)}{rate_est}.",
            f"- Requests: {load.requests:,} POST requests, one per distinct profile among "
            f"{facts.valid:,} users.",
            f"- Rate: {rate}.",
            f"- Connections: up to {load.max_workers} concurrent HTTPS connections (keep-alive),"
            " from <source IP addresses>.",
            f"- Traffic: about {_rate(fig.inbound_wire_bps)} inbound (gzip) and "
            f"{_rate(fig.outbound_bps)} outbound{est}; {_bytes(fig.total_in_bytes)} inbound "
            "in total.",
            f"- Errors: timeouts, 429 and 5xx are retried with exponential backoff (at most "
            f"{r.max_attempts} attempts per request); Retry-After is honoured (up to "
            f"{r.retry_after_max:g} s); the batch stops after {r.give_up_after:g} s of "
            "continuous unavailability.",
            f"- User-Agent: {USER_AGENT}",
            "",
            "Please tell us if this suits you, or whether we should lower the rate or pick "
            "another time.",
            "",
            "Thank you,",
            "<name, team, contact>",
        ]
    )


def _limited(load: Load, fig: Figures) -> bool:
    """True when rate_limit, not the latency, sets the sustained rate."""
    return load.rate_limit > 0 and fig.sustained_rps >= load.rate_limit


def _target(config: Config) -> str:
    return "the embedded mock API" if config.api.mock else config.api.url


def _limits(load: Load) -> str:
    rate = f"{load.rate_limit:g}/s" if load.rate_limit > 0 else "0 (none)"
    return f"rate_limit = {rate}, max_workers = {load.max_workers}"


def _tag(assumed: bool) -> str:
    return "(assumed)" if assumed else "(measured)"


def _bytes(n: float) -> str:
    """Decimal units, as network people count: 1 KB = 1,000 bytes."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


def _rate(bytes_per_s: float) -> str:
    return f"{_bytes(bytes_per_s)}/s ({bytes_per_s * 8 / 1e6:,.2f} Mbit/s)"


def _duration(seconds: float) -> str:
    text = format_duration(seconds)
    return f"{text} ({seconds / 86_400:.1f} days)" if seconds >= 86_400 else text
