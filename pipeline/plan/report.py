"""The text of `pipeline plan`: input, probe, load, and the notification for the partner.

Owns the report and the notification text for the partner's DevOps team, from the figures
`figures.py` works out. Every figure says where it comes from: "(measured)" by the probe or
"(assumed)" otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from pipeline.api.client import USER_AGENT
from pipeline.config import Config
from pipeline.plan.probe import ProbeResult, mean
from pipeline.traffic.windows import schedule_text
from pipeline.view.progress import format_duration, percentile

if TYPE_CHECKING:  # plan.py imports this module to render its figures
    from pipeline.plan.figures import Figures, InputFacts, Load


def render_report(
    config: Config,
    facts: InputFacts,
    probe: ProbeResult | None,
    load: Load,
    fig: Figures,
    assumed: frozenset[str],
    start: datetime | None = None,
) -> str:
    """The plan as text: input, probe, load, the partner windows (from `start`), and the
    notification for the partner."""
    lines = [f"Plan for {config.input.path}", "", "Input"]

    def row(label: str, value: str) -> None:
        lines.append(f"  {label:<24}{value}")

    per = "distinct request body" if config.processing.dedupe_requests else "valid row"
    row("rows", f"{facts.rows:,}")
    row("invalid rows", f"{facts.invalid:,} (never sent)")
    row("unique request bodies", f"{facts.unique_bodies:,} (of {facts.valid:,} valid rows)")
    row("answer store", _stored(config, facts))
    row("requests to send", f"{load.requests:,} (one per {per}; retries come on top)")
    if probe is not None:
        _probe_rows(row, lines, probe, config)
    _load_rows(row, lines, load, fig, assumed)
    if config.processing.windows:
        _window_rows(row, lines, config, fig, start or datetime.now(timezone.utc))
    if assumed:
        lines.append("  (assumed) figures: run `pipeline plan --probe 20` to measure them.")
    rule = "-" * 72
    lines += ["", "Notification for the partner's DevOps team:", rule]
    lines += [notification_text(config, facts, load, fig, assumed), rule]
    return "\n".join(lines)


def _stored(config: Config, facts: InputFacts) -> str:
    """What the answer store saves: bodies with an answer younger than `[cache] max_age`."""
    if config.cache.max_age.strip() == "0":
        return "not used ([cache] max_age = 0)"
    saved = facts.stored_bodies if config.processing.dedupe_requests else facts.stored_rows
    return (
        f"{facts.stored_bodies:,} of the bodies have an answer younger than "
        f"{config.cache.max_age}: {saved:,} requests saved"
    )


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


def _window_rows(
    row: Callable[[str, str], None],
    lines: list[str],
    config: Config,
    fig: Figures,
    start: datetime,
) -> None:
    p = config.processing
    base = f"{p.rate_limit:g} requests/s" if p.rate_limit > 0 else "no client limit"
    lines += ["", f"Partner windows (outside them: {base})"]
    for window in p.windows:
        row("window", f"{window.label()}: at most {window.rate:g} requests/s")
    row("now", schedule_text(p.windows, start, p.rate_limit))
    if fig.windows_s is not None:
        row("duration, windows in", f"{_duration(fig.windows_s)} from now, before retries")


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
        raw, wire = mean(probe.response_bytes), mean(probe.response_wire_bytes)
        row("response size", f"{_bytes(raw)} uncompressed, {_bytes(wire)} on the wire (measured)")
    if probe.errors:
        row("errors", f"{len(probe.errors)}, first: {probe.errors[0]}")


def notification_text(
    config: Config, facts: InputFacts, load: Load, fig: Figures, assumed: frozenset[str]
) -> str:
    """A message to send the partner before the batch; <...> are for the sender to fill."""
    # A figure worked out from an assumed latency or size is said to be an estimate.
    rate_est = " (estimate)" if "latency" in assumed and not _limited(load, fig) else ""
    est = " (estimate)" if rate_est or "size" in assumed else ""
    return "\n".join(
        [
            f"Subject: Planned batch on the CardGenius API: {load.requests:,} requests",
            "",
            "Hello,",
            "",
            f"We plan to run a batch of requests against the CardGenius API ({_target(config)})"
            " and would like to let you know the load to expect:",
            "",
            *_load_points(config, facts, load, fig, rate_est, est),
            "",
            "Please tell us if this suits you, or whether we should lower the rate or pick "
            "another time.",
            "",
            "Thank you,",
            "<name, team, contact>",
        ]
    )


def _load_points(
    config: Config,
    facts: InputFacts,
    load: Load,
    fig: Figures,
    rate_est: str,
    est: str,
) -> list[str]:
    """The notification's points: start, requests, rate, connections, traffic, errors and
    User-Agent. `rate_est`, `est`: " (estimate)" after a rate or a traffic figure that rests
    on an assumption, else ""."""
    r = config.retry
    duration = fig.duration_s if fig.windows_s is None else fig.windows_s
    return [
        f"- Start: <date, time and time zone>; expected duration {_duration(duration)}{rate_est}.",
        f"- Requests: {load.requests:,} POST requests, one per distinct profile among "
        f"{facts.valid:,} users.",
        f"- Rate: {_rate_words(config, load, fig, rate_est)}.",
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
    ]


def _rate_words(config: Config, load: Load, fig: Figures, rate_est: str) -> str:
    """The rate the partner will see: the cap, or what the latency allows; each window's."""
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
    for window in config.processing.windows:
        rate += f"; {window.label()}: at most {window.rate:g} requests/s"
    return rate


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
    if seconds == float("inf"):
        return "more than a year"
    text = format_duration(seconds)
    return f"{text} ({seconds / 86_400:.1f} days)" if seconds >= 86_400 else text
