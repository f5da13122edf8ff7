"""Benchmarks: the pipeline side by side with a bare loop and the thread-pool script.

    .venv/bin/python scripts/bench.py SCENARIO [--quick] [--rows N] [--rounds K]
    .venv/bin/python scripts/bench.py all --quick          # what CI runs (tests/test_bench.py)

Scenarios: overhead (1), latency (2), saturation (2b), cards100 (3), ratelimit (4), server429
(5), sharding (6), merge (7), kill (8), cache (9), compare (10), gateways (11), failing (12).
Each starts its own mock API in a process of its own on loopback (every contender calls the
same one), runs the contenders in turn, round after round (A B A B ...), and prints one table
row per contender: medians over the rounds of users/s (wall time of the whole command),
requests/s seen at the mock, client CPU per user (the contender's whole process tree), peak
RSS (summed over the tree), the mock's CPU per request, and the median per-round ratio to the
scenario's reference. The machine is shared and noisy: read the ratios, not the absolute
numbers. The contenders:

- pipeline: `python -m pipeline run --config C --no-progress`, as a user runs it, with
  `[api] mock = false` and `url` at the benchmark's mock; `dedupe_requests = false`, so that
  every contender sends one request per row, but for a body repeated from an earlier shard:
  the answer store is on, as shipped, and new for each run (its own `XDG_CACHE_HOME`), so
  every run costs what a user's first run costs and none reuses an earlier round's answers;
- bare loop: scripts/bench/bareloop.py, the same processes x threads of plain `requests`,
  one Session per thread (`trust_env` off), parsing the JSON, nothing else;
- thread-pool script: scripts/bench/threadpool.py, the single-process script in use today
  (pandas, one shared Session, 20 threads of a ThreadPoolExecutor, a log line per call,
  `time.sleep(2 ** attempt)` retries), re-created.

Users files are made once by scripts/make_sample_data.py and kept in `--data-dir`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

from bench import data, measure  # noqa: E402
from bench.compare import (  # noqa: E402
    FAILURES,
    HEADER,
    ONLY,
    Contender,
    Row,
    emit,
    ratio_between,
    remove,
    run_rounds,
    scratch_dir,
    server_ratio,
    summarize,
)
from bench.contenders import (  # noqa: E402
    bare,
    merge_rows,
    pipeline,
    result_statuses,
    shard_rows,
    threadpool,
)
from bench.gateways import gateways as gateway_rows  # noqa: E402
from bench.server import BenchMock, max_window  # noqa: E402

from pipeline.mockapi import MockSettings  # noqa: E402

Args = argparse.Namespace
THREADPOOL = "thread-pool script"
"""The contender most users run today: one process, 20 threads, one shared Session."""


def _size(args: Args, quick: int, full: int) -> int:
    return int(args.rows or (quick if args.quick else full))


def _rounds(args: Args, full: int = 3) -> int:
    return int(args.rounds or (1 if args.quick else full))


def _verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def overhead(args: Args) -> list[Row]:
    """1. Zero latency, 15 cards (~35 KB): the cost of everything that is not the API."""
    users = _size(args, 1500, 10000)
    path = data.users_file(args.data_dir, users)
    with BenchMock(MockSettings(latency_ms=0, jitter_ms=0, cards=15)) as mock:
        contenders = [
            bare("bare loop", path, mock.url, processes=2, threads=10),
            pipeline("pipeline", path, mock.url),
            pipeline("pipeline, live view (pty)", path, mock.url, pty=True),
            threadpool(THREADPOOL, path, mock.url),
            bare(
                "bare loop, trust_env on", path, mock.url, processes=2, threads=10, trust_env=True
            ),
            *_baseline(args, "pipeline", path, mock.url),
            # What pacing costs a run against a partner without a limit (full size only).
            *([] if args.quick else [pipeline(UNPACED, path, mock.url, processing=UNPACING)]),
        ]
        samples = run_rounds(contenders, _rounds(args), mock)
    rows = summarize("1 overhead", samples, users, "bare loop")
    _overhead_notes({r.contender: r for r in rows}, samples)
    _baseline_notes(rows, samples, "pipeline")
    return rows


UNPACED = "pipeline, adaptive = false"
UNPACING = {"adaptive": False}


def _baseline(args: Args, name: str, path: Path, url: str, **tables: Any) -> list[Contender]:
    """The `--baseline` checkout's pipeline, run like `name`, when one is given."""
    if args.baseline is None:
        return []
    return [pipeline(f"{name} (baseline)", path, url, code=args.baseline, **tables)]


def _baseline_notes(rows: list[Row], samples: dict, name: str) -> None:  # type: ignore[type-arg]
    for row in rows:
        if row.contender == f"{name} (baseline)":
            faster = ratio_between(samples, name, row.contender)
            row.add_note(f"{name} x baseline: {faster:.3f}")


def _overhead_notes(by_name: dict[str, Row], samples: dict) -> None:  # type: ignore[type-arg]
    live_name = "pipeline, live view (pty)"
    live = by_name.get(live_name)
    # rich's Live hides the cursor; plain log lines (and the coloured summary) do not.
    if live is not None and "\x1b[?25l" not in samples[live_name][0].measured.output:
        live.users_s = live.server_rate = live.cpu_ms = live.rss_mb = live.ratio = None
        live.mock_cpu_ms = None
        live.note = "not available: on a terminal the CLI still prints plain log lines"
    elif live is not None and "pipeline" in by_name:
        cost = ratio_between(samples, live_name, "pipeline")
        live.note = f"x pipeline without view: {cost:.3f} (median of per-round ratios)"
    unpaced = by_name.get(UNPACED)
    if unpaced is not None and "pipeline" in by_name:
        paced = ratio_between(samples, "pipeline", UNPACED)
        unpaced.add_note(f"pipeline (paced) x this: {paced:.3f}")
    p, b, s = (by_name.get(n) for n in ("pipeline", "bare loop", THREADPOOL))
    if s is not None:
        s.note = threadpool_note(samples[THREADPOOL])
    if p is None or b is None or s is None:
        return
    vs_pool = ratio_between(samples, "pipeline", THREADPOOL) or 0.0
    ok = (p.ratio or 0) >= 0.85 and vs_pool >= 2
    p.add_note(f"x thread-pool script {vs_pool:.2f}")
    p.note += f"; bar >= 0.85 x bare and >= 2 x thread-pool script: {_verdict(ok)}"
    if p.server_rate and b.server_rate and s.server_rate:
        p.note += (
            f"; request phase at the server: {p.server_rate / b.server_rate:.3f} x bare, "
            f"{p.server_rate / s.server_rate:.2f} x thread-pool script"
        )


def threadpool_note(samples: list) -> str:  # type: ignore[type-arg]
    outputs = [s.measured.output for s in samples]
    if any('"reader": "polars"' in o for o in outputs):
        return "pandas missing: polars read, openpyxl write"
    return "pandas read + to_excel"


def latency(args: Args) -> list[Row]:
    """2. 100 ms latency, C = 20 and C = 200: how close to C / L."""
    rows: list[Row] = []
    settings = MockSettings(latency_ms=100, jitter_ms=0)
    with BenchMock(settings) as mock:
        for c, quick, full in ((20, 600, 4000), (200, 1500, 10000)):
            users = _size(args, quick, full)
            path = data.users_file(args.data_dir, users)
            contenders = [
                *_at_concurrency(c, path, mock.url),
                *_baseline(args, f"pipeline C={c}", path, mock.url, processing={"max_workers": c}),
            ]
            if not args.quick:  # what pacing costs against a partner without a limit
                unpaced = {"max_workers": c, **UNPACING}
                contenders.append(pipeline(f"{UNPACED} C={c}", path, mock.url, processing=unpaced))
            if c == 20:
                contenders.append(threadpool(f"{THREADPOOL} C=20", path, mock.url))
            samples = run_rounds(contenders, _rounds(args), mock)
            reference = f"bare loop C={c}"
            part = summarize(f"2 latency C={c}", samples, users, reference)
            _baseline_notes(part, samples, f"pipeline C={c}")
            ceiling = c / (settings.latency_ms / 1000)
            for row in part:
                wall = (row.users_s or 0) / ceiling
                server = (row.server_rate or 0) / ceiling
                row.add_note(f"x C/L: {wall:.3f} wall, {server:.3f} at the server")
                if not row.contender.startswith("pipeline"):
                    continue
                if c == 20:
                    row.note += f"; bar >= 0.95 (wall / server): {_verdict(wall >= 0.95)} / "
                    row.note += _verdict(server >= 0.95)
                else:
                    at_server = server_ratio(samples, row.contender, reference)
                    row.note += f"; x bare at the server {at_server:.3f}" if at_server else ""
                    row.note += f"; bar >= 0.9 x bare: {_verdict((row.ratio or 0) >= 0.9)}"
            rows += part
    return rows


def _at_concurrency(c: int, path: Path, url: str) -> list[Contender]:
    """The bare loop (2 processes of c / 2 threads) and the pipeline with `max_workers = c`."""
    return [
        bare(f"bare loop C={c}", path, url, processes=2, threads=c // 2),
        pipeline(f"pipeline C={c}", path, url, processing={"max_workers": c}),
    ]


def saturation(args: Args) -> list[Row]:
    """2b. 100 ms latency, C from 20 to 400: where throughput stops following C / L, and why.

    Each row's note sets the rate at the mock against C / L and against what the machine's
    cores can serve at the CPU that the client and the mock spent per request."""
    rows: list[Row] = []
    settings = MockSettings(latency_ms=100, jitter_ms=0)
    cores = os.cpu_count() or 1
    with BenchMock(settings) as mock:
        for c in (20, 50, 100, 200, 400):
            ceiling = c / (settings.latency_ms / 1000)
            users = _size(args, max(200, int(ceiling) // 2), min(10_000, int(ceiling * 8)))
            path = data.users_file(args.data_dir, users)
            reference = f"bare loop C={c}"
            samples = run_rounds(_at_concurrency(c, path, mock.url), _rounds(args, full=1), mock)
            part = summarize(f"2b saturation C={c}", samples, users, reference)
            for row in part:
                server = (row.server_rate or 0) / ceiling
                cpu = (row.cpu_ms or 0) + (row.mock_cpu_ms or 0)
                row.add_note(f"x C/L at the server {server:.3f}")
                if cpu:
                    row.add_note(
                        f"client + mock CPU {cpu:.2f} ms a request: {cores} cores serve at "
                        f"most {cores * 1000 / cpu:,.0f}/s"
                    )
            rows += part
    return rows


def cards100(args: Args) -> list[Row]:
    """3. 100-card responses (~1 MB): CPU per user when parsing dominates; processes 1 vs 2."""
    users = _size(args, 80, 500)
    path = data.users_file(args.data_dir, users)
    shard = max(1, users // 10)
    with BenchMock(MockSettings(latency_ms=0, jitter_ms=0, cards=100)) as mock:
        contenders = [
            bare("bare loop P=1", path, mock.url, processes=1, threads=20),
            bare("bare loop P=2", path, mock.url, processes=2, threads=10),
            # Ten shards, as a real input has many: with the default 1,000 rows a shard, these
            # users would be one shard, run by one process whatever `processes` says.
            pipeline(
                "pipeline P=1", path, mock.url, processing={"processes": 1, "shard_size": shard}
            ),
            pipeline(
                "pipeline P=2", path, mock.url, processing={"processes": 2, "shard_size": shard}
            ),
            threadpool(THREADPOOL, path, mock.url),
        ]
        samples = run_rounds(contenders, _rounds(args), mock)
    rows = summarize("3 cards=100", samples, users, "bare loop P=2")
    for row in rows:
        if row.contender == "pipeline P=1":
            row.note = (
                f"x bare loop P=1: {ratio_between(samples, 'pipeline P=1', 'bare loop P=1'):.3f}"
            )
    return rows


def ratelimit(args: Args) -> list[Row]:
    """4. Client rate limit R with 2 and 4 processes, measured at the server."""
    rows: list[Row] = []
    seconds = 2 if args.quick else 10
    with BenchMock(MockSettings(latency_ms=20, jitter_ms=5)) as mock:
        for rate in (20, 100, 500):
            users = int(args.rows or max(30, rate * seconds))
            path = data.users_file(args.data_dir, users)
            for processes in (2, 4):
                name = f"pipeline R={rate} P={processes}"
                processing = {"rate_limit": float(rate), "processes": processes, "max_workers": 40}
                contender = pipeline(name, path, mock.url, processing=processing)
                samples = run_rounds([contender], _rounds(args, full=1), mock)
                if not samples:  # left out by --only
                    continue
                row = summarize(f"4 rate R={rate}", samples, users, None)[0]
                means = [s.seen.rate for s in samples[name] if s.seen]
                windows = [max_window(s.seen.arrivals) for s in samples[name] if s.seen]
                mean, window = min(means, key=lambda m: -abs(m - rate)), max(windows)
                bound = 1.05 * rate + 1
                ok = abs(mean / rate - 1) <= 0.03 and window <= bound
                row.note = (
                    f"mean {mean / rate:.3f} x R, largest 1-s window {window} "
                    f"(bar: mean within 3%, window <= {bound:g}): {_verdict(ok)}"
                )
                rows.append(row)
    return rows


def server429(args: Args) -> list[Row]:
    """5. A hidden server limit H (429 + Retry-After), client unlimited."""
    hidden = 50.0
    users = _size(args, 150, 600)
    path = data.users_file(args.data_dir, users)
    outcome: dict[str, list[str]] = {}

    def keep(contender: Contender, sample: object) -> None:
        failed = result_statuses(sample).get("failed", 0)  # type: ignore[arg-type]
        seen = sample.seen  # type: ignore[attr-defined]
        outcome.setdefault(contender.name, []).append(
            f"429 share {seen.share('429'):.1%}, {seen.calculate} requests, {failed} rows failed"
        )

    with BenchMock(MockSettings(latency_ms=20, jitter_ms=5, rate_limit=hidden)) as mock:
        contenders = [
            pipeline("pipeline", path, mock.url, ok_codes=(0, 1)),
            threadpool(THREADPOOL, path, mock.url),
        ]
        samples = run_rounds(contenders, _rounds(args), mock, keep=keep)
    rows = summarize(f"5 hidden limit H={hidden:g}", samples, users, "pipeline")
    for row in rows:
        x_h = (row.users_s or 0) / hidden
        row.note = f"{x_h:.3f} x H (wall); " + "; ".join(outcome.get(row.contender, [])[:1])
        if row.contender == "pipeline":
            row.note += " (bar: >= 0.85 H, <= 5% 429s, all rows ok)"
    return rows


def failing(args: Args) -> list[Row]:
    """12. A tenth of the users the API fails every time (HTTP 500 for their data), 100 ms:
    their retries must not slow the run down for everyone else."""
    users = _size(args, 300, 4000)
    path = data.users_file(args.data_dir, users)
    failed: dict[str, int] = {}

    def keep(contender: Contender, sample: object) -> None:
        failed[contender.name] = result_statuses(sample).get("failed", 0)  # type: ignore[arg-type]

    with BenchMock(MockSettings(latency_ms=100, jitter_ms=0, fail_share=0.1)) as mock:
        contenders = [
            pipeline(UNPACED, path, mock.url, ok_codes=(1,), processing=UNPACING),
            pipeline("pipeline", path, mock.url, ok_codes=(1,)),
        ]
        samples = run_rounds(contenders, _rounds(args), mock, keep=keep)
    rows = summarize("12 failing users, a tenth", samples, users, UNPACED)
    for row in rows:
        row.add_note(f"{failed.get(row.contender, 0)} rows failed (exit 1)")
        if row.contender == "pipeline":
            row.add_note(f"bar >= 0.9 x {UNPACED}: {_verdict((row.ratio or 0) >= 0.9)}")
    return rows


def sharding(args: Args) -> list[Row]:
    """6. Sharding 2,000,000 rows from CSV and Parquet, 200,000 from XLSX."""
    rows: list[Row] = []
    for fmt, quick, full in (
        ("csv", 50_000, 2_000_000),
        ("parquet", 50_000, 2_000_000),
        ("xlsx", 5_000, 200_000),
    ):
        count = int(args.rows or (quick if args.quick else full))
        if fmt == "xlsx":
            count = min(count, 1_000_000)
        path = data.users_file(args.data_dir, count, fmt, clean=False)
        rows += shard_rows(f"6 sharding {fmt} {count:,}", path, count, _rounds(args, full=1))
    return rows


def merge(args: Args) -> list[Row]:
    """7. Merge result rows to the workbook, against polars, pandas and a bare openpyxl loop."""
    count = _size(args, 5000, 200_000)
    return merge_rows(f"7 merge {count:,}", count, _rounds(args, full=1))


def kill(args: Args) -> list[Row]:
    """8. kill -9 at a random point, rerun: rows requested twice, time to resume."""
    users = _size(args, 1500, 5000)
    path = data.users_file(args.data_dir, users)
    settings = MockSettings(latency_ms=50, jitter_ms=10)
    in_flight, processes, batch = 20, 2, 50
    bound = in_flight + batch * processes
    rng = random.Random(args.seed)
    rows = []
    with BenchMock(settings) as mock:
        for round_ in range(_rounds(args)):
            folder = scratch_dir()
            contender = pipeline("pipeline", path, mock.url)
            cmd = contender.command(folder)
            expected = users / (in_flight / (settings.latency_ms / 1000))
            at = 1.0 + rng.uniform(0.2, 0.8) * expected
            mock.reset()
            first = measure.run(cmd, cwd=folder, kill_after=at)
            killed_at = first.started + at
            before = settle(mock)
            mock.reset()
            second = measure.run(cmd, cwd=folder)
            after = mock.seen()
            done = result_statuses(folder)
            twice = before.calculate + after.calculate - users
            orphan = (before.arrivals[-1] - killed_at) if before.arrivals else 0.0
            resume = (after.arrivals[0] - second.started) if after.arrivals else float("nan")
            complete = second.exit_code == 0 and sum(done.values()) == users
            rows.append(
                Row(
                    "8 kill -9",
                    f"pipeline, kill #{round_ + 1}",
                    users_s=users / (first.wall_s + second.wall_s),
                    cpu_ms=(first.cpu_s + second.cpu_s) * 1000 / users,
                    rss_mb=max(first.peak_rss_mb, second.peak_rss_mb),
                    note=(
                        f"killed {at:.1f} s in, after {before.calculate} requests; last request "
                        f"{orphan:+.2f} s after the kill; rows requested twice {twice} (bar <= "
                        f"{bound}): {_verdict(twice <= bound)}; rerun's first request "
                        f"{resume:.2f} s after its start, rerun {second.wall_s:.1f} s; "
                        f"all {users} rows once: {complete}"
                    ),
                )
            )
            remove(folder)
    return rows


def cache(args: Args) -> list[Row]:
    """9. The answer store: lookups against a zero-latency run; bytes per stored answer."""
    from bench.storebench import answer_store

    users = _size(args, 300, 10000)
    path = data.users_file(args.data_dir, users)
    return answer_store(path, users, 1000 if args.quick else 100_000, _rounds(args))


def compare(args: Args) -> list[Row]:
    """10. `pipeline compare` of two runs: time and memory at 2,000,000 users a side."""
    from bench.storebench import compare_rows

    return [compare_rows(_size(args, 20_000, 2_000_000))]


def settle(mock: BenchMock, quiet_s: float = 3.0, limit_s: float = 15.0):  # type: ignore[no-untyped-def]
    """What the mock saw once no request has arrived for `quiet_s` (orphans have stopped)."""
    deadline = time.monotonic() + limit_s
    seen = mock.seen()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        seen = mock.seen()
        last = seen.arrivals[-1] if seen.arrivals else 0.0
        if time.monotonic() - last >= quiet_s:
            break
    return seen


def gateways(args: Args) -> list[Row]:
    """11. Each kind of partner gateway (bench/gateways.py), measured at the gateway."""
    return gateway_rows(args.quick, args.rows, _rounds(args, full=1), args.data_dir)


SCENARIOS: dict[str, Callable[[Args], list[Row]]] = {
    "overhead": overhead,
    "latency": latency,
    "saturation": saturation,
    "cards100": cards100,
    "ratelimit": ratelimit,
    "server429": server429,
    "sharding": sharding,
    "merge": merge,
    "kill": kill,
    "cache": cache,
    "compare": compare,
    "gateways": gateways,
    "failing": failing,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--quick", action="store_true", help="CI sizes: all in ~3 minutes")
    parser.add_argument("--rows", type=int, help="users (or rows) per run; default per scenario")
    parser.add_argument("--rounds", type=int, help="rounds of A B ...; default 1 quick, 3 full")
    parser.add_argument("--seed", type=int, default=1, help="seeds the kill points")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path("/tmp/cardgenius-bench-data"),
        help="where users files are made once and kept",
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument(
        "--only",
        help="comma-separated: run only contenders whose name holds one of these (gateways: "
        "'pipeline vs KIND', e.g. --only 'token bucket,80->30')",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="a checkout of other code (git worktree add DIR COMMIT): scenarios 1 and 2 run "
        "its pipeline too, side by side, as 'pipeline (baseline)'",
    )
    args = parser.parse_args(argv)
    ONLY[:] = [o for o in (args.only or "").split(",") if o]
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    print(HEADER, flush=True)
    all_rows: list[Row] = []
    for name in names:
        started = time.monotonic()
        rows = SCENARIOS[name](args)
        emit(rows)
        all_rows += rows
        print(f"# {name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
    if args.json:
        args.json.write_text(json.dumps([vars(r) for r in all_rows], indent=1), encoding="utf-8")
    for failure in FAILURES:
        print(f"# FAILED {failure}", file=sys.stderr)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
