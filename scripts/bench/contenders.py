"""The contenders: how each is started, and the file-side scenarios (sharding, merge).

A contender is a command line made for a fresh temporary folder (`compare.Contender`).
"""

from __future__ import annotations

import importlib
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench import data, measure
from bench.compare import Contender, Row, Sample, remove, run_rounds, scratch_dir, summarize


def pipeline(
    name: str,
    input_path: Path,
    url: str,
    *,
    pty: bool = False,
    ok_codes: tuple[int, ...] = (0,),
    code: Path | None = None,
    **tables: dict[str, Any],
) -> Contender:
    """`python -m pipeline run` as a user runs it: `--no-progress`, or on a terminal (`pty`).
    `code`: the `pipeline` package of another checkout (a baseline), not the installed one.

    The answer store is the user's default (`[cache]` as shipped: looked up, filled, answers
    younger than 35 days reused) in a cache folder of the run's own (`XDG_CACHE_HOME`), so
    every run pays what a user's first run pays, and none reuses another's answers. A
    baseline that has no answer store is run the same way."""

    def command(folder: Path) -> list[str]:
        config = data.write_config(folder, input_path, url, **tables)
        env = [f"XDG_CACHE_HOME={folder / CACHE_HOME}"]
        if code is not None:
            env.append(f"PYTHONPATH={code}")
        cmd = ["env", *env, sys.executable, "-m", "pipeline", "run", "--config", str(config)]
        return cmd if pty else [*cmd, "--no-progress"]

    return Contender(name, command, pty=pty, ok_codes=ok_codes)


CACHE_HOME = "cache-home"
"""A pipeline run's own cache folder, in its temporary folder: its answer store is new."""


def bare(
    name: str, input_path: Path, url: str, *, processes: int, threads: int, trust_env: bool = False
) -> Contender:
    def command(folder: Path) -> list[str]:
        args = ["--url", url, "--input", str(input_path)]
        args += ["--processes", str(processes), "--threads", str(threads)]
        return measure.python_cmd("bench.bareloop", *args, *(["--trust-env"] if trust_env else []))

    return Contender(name, command)


def threadpool(name: str, input_path: Path, url: str) -> Contender:
    def command(folder: Path) -> list[str]:
        args = ["--url", url, "--input", str(input_path), "--out", str(folder / "out")]
        return measure.python_cmd("bench.threadpool", *args)

    return Contender(name, command)


def job(name: str, job_name: str, **options: Path | int) -> Contender:
    def command(folder: Path) -> list[str]:
        args = [job_name]
        for key, value in options.items():
            args += [f"--{key}", str(value)]
        if "out" not in options:
            args += ["--out", str(folder / ("out.xlsx" if job_name.startswith("merge") else "out"))]
        return measure.python_cmd("bench.jobs", *args)

    return Contender(name, command)


def result_statuses(source: Sample | Path) -> Counter[str]:
    """Rows by status: a pipeline's result shards, or the thread-pool script's last JSON line."""
    folder = source.folder if isinstance(source, Sample) else source
    shards = sorted((folder / "out" / "shards" / "results").glob("*.parquet"))
    if shards:
        counts: Counter[str] = Counter()
        for path in shards:
            counts.update(pq.read_table(path, columns=["status"]).column(0).to_pylist())
        return counts
    if isinstance(source, Sample):
        for line in reversed(source.measured.output.splitlines()):
            if line.startswith("{"):
                return Counter({k: v for k, v in json.loads(line).items() if isinstance(v, int)})
    return Counter()


def shard_rows(scenario: str, path: Path, count: int, rounds: int) -> list[Row]:
    """Scenario 6 for one file: the pipeline's sharding against a whole-file read with pandas."""
    contenders = [
        job("pipeline shard_input", "shard", input=path),
        job("thread-pool script: pandas reads it whole", "whole-read", input=path),
    ]
    samples = run_rounds(contenders, rounds, None)
    rows = summarize(scenario, samples, count, "thread-pool script: pandas reads it whole")
    for row in rows:
        row.add_note("users/s = rows/s")
    return rows


def merge_rows(scenario: str, count: int, rounds: int) -> list[Row]:
    """Scenario 7: scripts/bench_merge.py's `bench_merge` if it is there, else a minimal
    comparison of our own on synthetic result shards."""
    try:
        bench_merge = importlib.import_module("bench_merge").bench_merge
    except (ImportError, AttributeError, SyntaxError):
        bench_merge = None
    if bench_merge is not None:
        # polars' memory grows with the rows (~2 GB at 200,000): left out past 500,000.
        names = [
            n
            for n in ("bare", "ours", "polars", "parquet", "csv")
            if n != "polars" or count <= 500_000
        ]
        table = bench_merge(count, rounds=rounds, contenders=names)
        return [_from_bench_merge(scenario, row) for row in table]
    shards = scratch_dir()
    try:
        made = measure.run(
            measure.python_cmd("bench.jobs", "results", "--rows", str(count), "--out", str(shards))
        )
        if made.exit_code != 0:
            raise RuntimeError(f"could not make result shards: {made.output[-500:]}")
        contenders = [
            job("bare openpyxl write-only loop", "merge-openpyxl", shards=shards),
            job("pipeline merge.write_workbook", "merge-pipeline", shards=shards),
            *_optional("polars write_excel", "merge-polars", "xlsxwriter", shards),
            *_optional("pandas to_excel", "merge-pandas", "pandas", shards),
        ]
        samples = run_rounds(contenders, rounds, None)
    finally:
        remove(shards)
    rows = summarize(scenario, samples, count, "bare openpyxl write-only loop")
    for row in rows:
        row.add_note("users/s = rows/s (bench.py's own)")
    return rows


def _optional(name: str, job_name: str, module: str, shards: Path) -> list[Contender]:
    try:
        importlib.import_module(module)
    except ImportError:
        print(f"# {name}: skipped, {module} is not installed", file=sys.stderr)
        return []
    return [job(name, job_name, shards=shards)]


def _from_bench_merge(scenario: str, found: dict[str, Any]) -> Row:
    """A row of bench_merge's table (keys: contender, rows, rows_per_s, seconds, peak_rss_mb,
    file_mb, vs_bare, vs_polars, or error)."""
    name = str(found.get("contender", "?"))
    if "error" in found:
        return Row(scenario, name, note=f"not run: {found['error']}")
    note = f"{found.get('file_mb')} MB file"
    if found.get("vs_polars") is not None:  # polars is left out of the biggest runs
        note += f"; x polars {found['vs_polars']}"
    note += f"; seconds per round {found.get('seconds')}"
    return Row(
        scenario,
        name,
        users_s=found.get("rows_per_s"),
        rss_mb=found.get("peak_rss_mb"),
        ratio=found.get("vs_bare"),
        note=("reference; " if name == "bare" else "") + note + " (scripts/bench_merge.py)",
    )
