"""Scenario 9, the answer store: what a lookup costs against a zero-latency run, and the size
of the store per answer.

- The pipeline at zero latency as a user's first run (the shipped `[cache]`, a new store of
  its own: every answer looked up, none found, every answer stored), then again on a copy
  of the store that run filled (`max_age = "30d"`): every answer reused. Each round starts
  from a new store, so no round reuses another's answers.
- Lookups: for the second run's input shards, what a worker does before it sends anything:
  the body keys, the store's query, the outcome of each row from its stored answer, timed in
  this process, against the first run (bar: at most 5%). Both in CPU seconds (the run's: its
  whole process tree), which a shared, loaded machine disturbs far less than wall time.
- Size: `answers` distinct realistic answers (the mock's, 15 cards, top 3 kept, the benchmark's
  four fields) packed into a fresh store, its bytes per answer, times 2,000,000 (bar: 1 GB).
"""

from __future__ import annotations

import random
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

from bench.compare import Contender, Row, Sample, run_rounds, scratch_dir, summarize
from bench.contenders import CACHE_HOME, pipeline
from bench.server import BenchMock
from pipeline.api import cardgenius
from pipeline.api.endpoint import identity_text
from pipeline.config import load_config
from pipeline.mockapi import MockSettings, compute_response
from pipeline.run.outcomes import answered_outcome
from pipeline.run.reuse import CacheSettings, Reuse
from pipeline.state.answers import body_keys
from pipeline.state.cache import STORE_FILE, AnswerStore, Stored, pack
from pipeline.state.store import RunLayout, read_parquet

EMPTY, REUSED = "pipeline, store empty", "pipeline, every answer reused"
BAR_SHARE, BAR_BYTES, TARGET = 0.05, 1e9, 2_000_000


def answer_store(path: Path, users: int, answers: int, rounds: int) -> list[Row]:
    store = scratch_dir()
    lookups: list[float] = []

    def keep(contender: Contender, sample: Sample) -> None:
        if contender.name == EMPTY:  # this round's store, for this round's second run
            shutil.rmtree(store, ignore_errors=True)
            shutil.copytree(sample.folder / CACHE_HOME / "cardgenius-pipeline", store)
        elif contender.name == REUSED:
            lookups.append(_lookup_seconds(sample.folder))

    with BenchMock(MockSettings(latency_ms=0, jitter_ms=0, cards=15)) as mock:
        contenders = [
            pipeline(EMPTY, path, mock.url),
            pipeline(REUSED, path, mock.url, cache={"path": str(store), "max_age": "30d"}),
        ]
        samples = run_rounds(contenders, rounds, mock, keep=keep)
    rows = summarize("9 answer store", samples, users, EMPTY)
    runs = [s.measured.cpu_s for s in samples.get(EMPTY, [])]
    if lookups and runs:
        lookup, run = statistics.median(lookups), statistics.median(runs)
        share = lookup / run
        verdict = "MET" if share <= BAR_SHARE else "NOT MET"
        rows.append(
            Row(
                "9 answer store",
                f"lookups of {users:,} rows",
                cpu_ms=lookup * 1000 / users,
                note=f"{share:.3f} of a zero-latency run's CPU ({lookup:.3f} s of {run:.2f} s); "
                f"bar <= {BAR_SHARE}: {verdict}",
            )
        )
    rows.append(_size_row(answers))
    return rows


def _lookup_seconds(folder: Path) -> float:
    """What the workers of a run in `folder` spend before sending: keys, query, outcomes."""
    config = load_config(folder / "config.toml")
    settings = CacheSettings(
        Path(config.cache.path) / STORE_FILE, identity_text(config), 30 * 86_400.0
    )
    mapping = list(config.request.items())
    reuse = Reuse(settings, list(config.request), config.output.top_n)
    layout = RunLayout(folder / "out")
    tables = [read_parquet(layout.input_shard(name)) for name in layout.input_shards()]
    started = time.process_time()
    found = 0
    for table in tables:
        keys = body_keys(table, mapping)
        stored = reuse.look_up(keys)
        found += sum(reuse.outcome(stored[k]) is not None for k in keys if k in stored)
    seconds = time.process_time() - started
    reuse.close()
    assert found == sum(t.num_rows for t in tables), "every row should be found"
    return seconds


def _size_row(answers: int) -> Row:
    folder = scratch_dir()
    fields = ["amazon_spends", "flipkart_spends", "grocery_spends_online", "other_online_spends"]
    rng = random.Random(9)
    settings = MockSettings()
    store = AnswerStore(folder / STORE_FILE, '{"auth":"none","url":"bench"}')
    batch: list[tuple[int, Stored]] = []
    now = time.time()
    for _ in range(answers):
        body = {f: rng.choice([0, rng.randint(1, 500), rng.randint(500, 40_000)]) for f in fields}
        cards = compute_response(body, settings)["savings"]
        outcome = _outcome(cards, fields)
        key = cardgenius.body_key(cardgenius.body_bytes(body) + rng.randbytes(8))
        batch.append((key, Stored(now, pack(outcome, fields, 3))))
        if len(batch) == 5000:
            store.put_many(batch)
            batch = []
    store.put_many(batch)
    store.close()
    size = sum(p.stat().st_size for p in folder.iterdir())
    each = size / answers
    verdict = "MET" if each * TARGET <= BAR_BYTES else "NOT MET"
    return Row(
        "9 answer store",
        f"store of {answers:,} answers",
        note=f"{each:.0f} bytes an answer; {TARGET:,}: {each * TARGET / 1e6:,.0f} MB; "
        f"bar <= 1 GB: {verdict}",
    )


def _outcome(cards: list[Any], fields: list[str]) -> dict[str, Any]:
    from pipeline.api.client import Answer

    answer = Answer(cards=cards, http_status=200, latency_ms=1.0)
    return answered_outcome({}, [], 1, answer, fields, 3, time.time())


def compare_rows(count: int) -> Row:
    """Scenario 10: `compare` of two runs of `count` users each (synthetic result shards, 1 in
    5 users changed, 5% added and removed), in a process of its own: wall time and peak RSS."""
    import json
    import sys

    import polars as pl

    from bench import measure

    folder = scratch_dir()
    shard = 20_000
    for side, offset in (("old", 0), ("new", count // 20)):
        results = folder / side / "shards" / "results"
        results.mkdir(parents=True)
        for start in range(0, count, shard):
            n = min(shard, count - start)
            ids = pl.int_range(start + offset, start + offset + n, eager=True)
            moved = (ids % 5 == 0).cast(pl.Int64) * (1 if side == "new" else 0)
            card = (ids * 7 + moved) % 15
            pl.DataFrame(
                {
                    "_row": pl.int_range(start, start + n, eager=True),
                    "user_id": ids.cast(pl.String),
                    "status": pl.Series(["ok"] * n),
                    "error": pl.Series([None] * n, dtype=pl.String),
                    "top1_card_id": card,
                    "top1_card_name": "Card " + card.cast(pl.String),
                    "top1_net_savings": (ids % 977).cast(pl.Float64) * 10,
                }
            ).write_parquet(results / f"shard-{start // shard:05d}.parquet")
        info = {"fingerprint": {"id_column": "user_id"}, "input": {"rows": count}}
        (folder / side / "run.json").write_text(json.dumps(info))
    code = (
        "import sys; from pathlib import Path; from pipeline.compare import compare_runs; "
        "print(compare_runs(Path(sys.argv[1]), Path(sys.argv[2]), 100.0).counts)"
    )
    m = measure.run([sys.executable, "-c", code, str(folder / "old"), str(folder / "new")])
    ok = m.exit_code == 0 and m.wall_s < 20 and m.peak_rss_mb < 1000
    return Row(
        "10 compare",
        f"compare {count:,} x 2 users",
        users_s=count / m.wall_s,
        cpu_ms=m.cpu_s * 1000 / count,
        rss_mb=m.peak_rss_mb,
        note=f"{m.wall_s:.1f} s ({m.cpu_s:.1f} s of CPU); bar < 20 s and < 1 GB: "
        f"{'MET' if ok else 'NOT MET'}; " + m.output.strip().splitlines()[-1][:120],
    )
