"""Scenario 11, `gateways`: the pipeline against each kind of partner gateway, measured at it.

Each kind is a mock with a hidden limit H (gateway.py: token bucket with and without
Retry-After, sliding and fixed windows of 1 s and 10 s, a bucket that sends RateLimit
headers, a limit that goes 80 -> 30 -> 80 req/s mid-run), and the pipeline runs as a user
would: 2 processes, 64 in flight, no client rate, about 40 x H users (10 x H with --quick).
From the mock's arrival times (first to last request), per kind:

- served: answers that got through per second, over H;
- 429s: the share of requests answered 429, and how many of them in the first 5 s;
- for the moving limit: what was served in the fifth second after each change, over the
  new limit;
- rows: every row `ok`.

The bars (printed MET / NOT MET): served >= 0.9 H with <= 3% 429s; with RateLimit headers
<= 0.5% 429s; after each change of the limit >= 0.8 of the new one, <= 5% 429s overall; in
the first 5 s at most 2 x H 429s.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from bench import data
from bench.compare import ONLY, Contender, Row, Sample, run_rounds, summarize
from bench.contenders import pipeline, result_statuses
from bench.server import BenchMock, Seen
from pipeline.mockapi import MockSettings, parse_schedule

IN_FLIGHT = 64
PROCESSES = 2


@dataclass(frozen=True)
class Kind:
    name: str
    hidden: float
    mock: dict[str, Any] = field(default_factory=dict)
    max_429: float = 0.03
    schedule: str = ""
    """Full-size schedule; --quick divides its times by 3."""


KINDS = (
    Kind("token bucket", 80.0, {"limit_kind": "token-bucket"}),
    Kind(
        "token bucket, no Retry-After", 80.0, {"limit_kind": "token-bucket", "retry_after": "none"}
    ),
    Kind("sliding 1 s", 60.0, {"limit_kind": "sliding"}),
    Kind("fixed 1 s", 60.0, {"limit_kind": "fixed"}),
    Kind("fixed 10 s", 60.0, {"limit_kind": "fixed", "limit_window_s": 10.0}),
    Kind(
        "token bucket + RateLimit headers",
        80.0,
        {"limit_kind": "token-bucket", "limit_headers": "ietf"},
        max_429=0.005,
    ),
    Kind("limit 80->30->80", 80.0, {"limit_kind": "token-bucket"}, 0.05, "20:30,40:80"),
)


def gateways(quick: bool, rows: int | None, rounds: int, data_dir: Any) -> list[Row]:
    out: list[Row] = []
    for kind in KINDS:
        name = f"pipeline vs {kind.name}"
        if ONLY and not any(o in name for o in ONLY):
            continue  # --only "token bucket,80->30": the kinds whose name holds one of these
        schedule = _scaled(kind.schedule, 3.0 if quick else 1.0)
        users = rows or _users(kind, schedule, 10 if quick else 40)
        path = data.users_file(data_dir, users)
        settings = MockSettings(
            latency_ms=20, jitter_ms=5, rate_limit=kind.hidden, rate_schedule=schedule, **kind.mock
        )
        processing = {"max_workers": IN_FLIGHT, "processes": PROCESSES}
        notes: list[str] = []
        with BenchMock(settings) as mock:
            contender = pipeline(name, path, mock.url, ok_codes=(0, 1), processing=processing)
            samples = run_rounds([contender], rounds, mock, keep=_keeper(kind, schedule, notes))
        if not samples.get(name):
            continue
        row = summarize(f"11 gateway: {kind.name}, H={kind.hidden:g}", samples, users, None)[0]
        row.note = " | ".join(notes)
        out.append(row)
    return out


def _keeper(kind: Kind, schedule: str, notes: list[str]) -> Any:
    def keep(_: Contender, sample: Sample) -> None:
        assert sample.seen is not None
        notes.append(judge(kind, schedule, sample.seen, result_statuses(sample)))

    return keep


def judge(kind: Kind, schedule: str, seen: Seen, statuses: Any) -> str:
    """One run's figures against the bars, as a note."""
    h, arrivals, refused = kind.hidden, seen.arrivals, sorted(seen.throttled)
    span = seen.span_s or 1.0
    served = (len(arrivals) - len(refused)) / span
    share = len(refused) / max(1, len(arrivals))
    start = arrivals[0] if arrivals else 0.0
    flood = bisect.bisect_left(refused, start + 5.0)
    rows_ok = set(statuses) <= {"ok", "no_cards"}
    checks = [share <= kind.max_429, flood <= 2 * h, rows_ok]
    text = f"served {served / h:.3f} H, 429s {share:.2%} ({flood} in the first 5 s)"
    if schedule:
        after = []
        for at, limit in parse_schedule(schedule):
            got = _served_between(arrivals, refused, start + at + 4.0, start + at + 5.0)
            after.append(got / limit)
            checks.append(got >= 0.8 * limit)
        text += ", 5th s after each change " + ", ".join(f"{a:.2f}" for a in after) + " x new"
    else:
        checks.append(served >= 0.9 * h)
    text += f", rows {dict(statuses)}: {'MET' if all(checks) else 'NOT MET'}"
    return text


def _served_between(arrivals: list[float], refused: list[float], a: float, b: float) -> float:
    sent = bisect.bisect_left(arrivals, b) - bisect.bisect_left(arrivals, a)
    no = bisect.bisect_left(refused, b) - bisect.bisect_left(refused, a)
    return (sent - no) / (b - a)


def _scaled(schedule: str, factor: float) -> str:
    return ",".join(f"{at / factor:g}:{rate:g}" for at, rate in parse_schedule(schedule))


def _users(kind: Kind, schedule: str, seconds_of_h: int) -> int:
    """About `seconds_of_h` x H users; with a schedule, enough to run 8 s past its last change
    at the limits it sets."""
    if not schedule:
        return int(seconds_of_h * kind.hidden)
    total, at, rate = 0.0, 0.0, kind.hidden
    for change, limit in parse_schedule(schedule):
        total += (change - at) * rate
        at, rate = change, limit
    return int(total + 8 * rate)
