"""The run folder: its layout, `run.json`, shard states, checkpoints, JSON and Parquet files.

Every state a command needs is read from files here, so `status`, `rerun-failed` and `merge`
work on any run folder, even one whose run was killed:

    out/run.json                      the run's fingerprint and settings
    out/pipeline.log                  the log
    out/shards/input/shard-NNNNN.parquet    input rows, validated
    out/answers.sqlite                answers by request body (never pay twice)
    out/shards/partial/shard-NNNNN.jsonl    finished rows of a shard still running (checkpoint)
    out/shards/results/shard-NNNNN.parquet  outcomes; exists only for a finished shard
    out/status.json                   the running run's figures, for `pipeline watch`
    out/control/                      commands for the running run (`pipeline control`)

Files that matter are replaced whole, through atomic.py: a kill at any moment leaves the old
file or the new one, never half of one. A checkpoint is the exception: it only grows, by whole
lines (`Checkpoint`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import LocalError, local_error
from pipeline.state.atomic import atomic_file, atomic_path, naming

RUN_FILE = "run.json"
LOG_FILE = "pipeline.log"
SHARD_PREFIX = "shard-"


def write_json_atomic(path: Path, data: object, *, durable: bool = True) -> None:
    with atomic_file(path, "w", durable=durable) as handle:
        json.dump(data, handle, indent=2, sort_keys=False, ensure_ascii=False)
        handle.write("\n")


def read_parquet(path: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """A Parquet file's rows. `pq.read_table` would import pyarrow.dataset (~0.1 s a process)."""
    with pq.ParquetFile(path) as f:
        return f.read(columns=columns)


def parquet_columns(path: Path) -> list[str]:
    """The column names of a Parquet file (its footer only)."""
    with pq.ParquetFile(path) as f:
        return list(f.schema_arrow.names)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


@dataclass(frozen=True)
class RunLayout:
    """Where each file of a run lives, below the output folder `root`."""

    root: Path

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def log_file(self) -> Path:
        return self.root / LOG_FILE

    @property
    def input_dir(self) -> Path:
        return self.root / "shards" / "input"

    @property
    def results_dir(self) -> Path:
        return self.root / "shards" / "results"

    @property
    def partial_dir(self) -> Path:
        return self.root / "shards" / "partial"

    @property
    def answers_file(self) -> Path:
        """Answers by request body, for copying to rows with the same body (answers.py)."""
        return self.root / "answers.sqlite"

    @property
    def repeated_file(self) -> Path:
        """Keys of the request bodies that occur more than once (answers.py)."""
        return self.root / "shards" / "repeated.parquet"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    @property
    def status_file(self) -> Path:
        """The running run's figures, rewritten about once a second (`pipeline watch`)."""
        return self.root / "status.json"

    @property
    def control_dir(self) -> Path:
        """Commands for the running run, one file each (`pipeline control`)."""
        return self.root / "control"

    def checkpoint(self, name: str) -> Path:
        """The checkpoint of an unfinished shard: its finished rows so far."""
        return self.partial_dir / name.replace(".parquet", ".jsonl")

    def shard_name(self, index: int) -> str:
        return f"{SHARD_PREFIX}{index:05d}.parquet"

    @staticmethod
    def shard_index(name: str) -> int:
        """The position of a shard in the input, from its name."""
        return int(name[len(SHARD_PREFIX) :].split(".")[0])

    def input_shard(self, name: str) -> Path:
        return self.input_dir / name

    def result_shard(self, name: str) -> Path:
        return self.results_dir / name

    def input_shards(self) -> list[str]:
        """Names of the input shards, in input order."""
        return _shard_names(self.input_dir)

    def result_shards(self) -> list[str]:
        """Names of the finished shards' result files, in input order."""
        return _shard_names(self.results_dir)

    def result_shard_paths(self) -> list[Path]:
        """The finished shards' result files, in input order."""
        return [self.result_shard(name) for name in self.result_shards()]


def _shard_names(folder: Path) -> list[str]:
    """Shard files in `folder`, in input order: by their number (past shard 99,999 the names
    grow a digit, so the names' own order is not the input's)."""
    if not folder.is_dir():
        return []
    names = [
        p.name
        for p in folder.iterdir()
        if p.name.startswith(SHARD_PREFIX) and p.suffix == ".parquet"
    ]
    return sorted(names, key=RunLayout.shard_index)


def read_run(layout: RunLayout) -> dict[str, Any] | None:
    """The run's `run.json`, or None when the folder holds no run."""
    try:
        text = layout.run_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise local_error(exc, layout.run_file) from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("fingerprint", {}), dict):
        raise LocalError(
            f"{layout.run_file}: damaged (not the run file this tool wrote); the run cannot "
            "be resumed: use --fresh to start over, or --out for another folder"
        )
    return data


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON-like dicts."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return [prefix or "(all)"] if old != new else []
    changed: list[str] = []
    for key in sorted(set(old) | set(new)):
        changed += changed_keys(
            old.get(key), new.get(key), f"{prefix}{key}" if not prefix else f"{prefix}.{key}"
        )
    return changed


class Checkpoint:
    """A shard's finished rows, appended as JSON lines by the one process that owns the shard.

    Each `append` writes whole lines with one `write` and flushes them to the OS, so a killed
    process loses only rows it had not appended yet; a torn last line (power loss mid-write)
    is skipped when the file is read back.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = open(path, "ab")  # noqa: SIM115

    def append(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            data = b"".join(
                json.dumps(row, separators=(",", ":"), allow_nan=False).encode() + b"\n"
                for row in rows
            )
            try:
                self._handle.write(data)
                self._handle.flush()
            except OSError as exc:
                raise naming(exc, self.path) from exc

    def close(self) -> None:
        self._handle.close()


def read_checkpoint(path: Path, key: str) -> dict[int, dict[str, Any]]:
    """The rows a checkpoint holds, by `row[key]`; unreadable lines (a torn tail) are skipped."""
    rows: dict[int, dict[str, Any]] = {}
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get(key), int):
            rows[row[key]] = row
    return rows
