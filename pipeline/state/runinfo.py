"""What `run.json` says about a run, and the run's log file.

`run.json` holds the run's fingerprint (what defines the results: the input file's identity
and content hash, the request mapping, the endpoint, top_n, the id column, the row limit), the
settings used, and its timing. A rerun with another fingerprint is refused; settings that do
not change results (workers, rate, ...) may change between resumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pipeline.api import endpoint
from pipeline.config import Config
from pipeline.errors import InputError
from pipeline.state.store import RunLayout, read_run, write_json_atomic

log = logging.getLogger("pipeline")
RUN_FORMAT = 1


def fingerprint(
    config: Config, limit: int | None, known: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What defines the run's results; any change to it means another run.

    `known` is the previous run.json: when the input file's path, size and modification time
    are what it recorded, its content hash is reused instead of reading the file again (a
    2,000,000-row CSV takes about a second to hash).
    """
    return {
        "input": _file_identity(config.input.path, (known or {}).get("input_stat")),
        "sheet": config.input.sheet,
        "id_column": config.input.id_column,
        "limit": limit,
        "request": {k: list(v) for k, v in config.request.items()},
        "endpoint": endpoint.identity(config),
        "top_n": config.output.top_n,
    }


def _file_identity(path: Path, known: dict[str, Any] | None) -> dict[str, Any]:
    try:
        stat = path.stat()
        if known and known.get("stat") == [str(path.resolve()), stat.st_size, stat.st_mtime_ns]:
            digest = str(known["sha256"])
        else:
            digest = _sha256(path)
    except FileNotFoundError:
        raise InputError(f"{path}: input file not found ([input] path or --input)") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read input file: {exc.strerror}") from None
    return {"path": str(path.resolve()), "size": stat.st_size, "sha256": digest}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def input_stat(config: Config, fp: dict[str, Any]) -> dict[str, Any]:
    """What lets the next resume trust the hash without reading the file again."""
    stat = config.input.path.stat()
    return {
        "stat": [fp["input"]["path"], stat.st_size, stat.st_mtime_ns],
        "sha256": fp["input"]["sha256"],
    }


def new_run(config: Config, fp: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": RUN_FORMAT,
        "fingerprint": fp,
        "input_stat": input_stat(config, fp),
        "settings": settings_of(config),
        "input": {"sharded": False},
        "started_at": now_iso(),
        "finished_at": None,
        "elapsed_seconds": 0.0,
    }


def settings_of(config: Config) -> dict[str, Any]:
    """The settings that shape how a run goes (not what it yields); no key, no secrets."""
    processing = asdict(config.processing)
    processing["windows"] = [w.as_config() for w in config.processing.windows]
    return {
        "processing": processing,
        "retry": asdict(config.retry),
        "api": {
            "url": "(embedded mock)" if config.api.mock else config.api.url,
            "auth": config.api.auth,
            "timeout": config.api.timeout,
            "connect_timeout": config.api.connect_timeout,
        },
    }


def record_settings(layout: RunLayout, config: Config, shard_size: int) -> dict[str, Any]:
    """Put the settings in force for this invocation in run.json (the Summary sheet shows
    them); `shard_size` is the one the run was sharded by."""
    info = read_run(layout) or {}
    settings = settings_of(config)
    settings["processing"]["shard_size"] = shard_size
    info["settings"] = settings
    write_json_atomic(layout.run_file, info)
    return info


def record_invocation(
    layout: RunLayout, seconds: float, *, finished: bool, worked: bool = True
) -> dict[str, Any]:
    """Add one invocation's time to run.json, and the finish time when every shard is done and
    this invocation did the last of it (`worked`), or none was recorded."""
    info = read_run(layout) or {}
    info["elapsed_seconds"] = round(float(info.get("elapsed_seconds", 0.0)) + seconds, 3)
    done = finished and len(layout.result_shards()) == len(layout.input_shards())
    if done and (worked or not info.get("finished_at")):
        info["finished_at"] = now_iso()
    write_json_atomic(layout.run_file, info)
    return info


def record_summary(layout: RunLayout, facts: list[tuple[str, object]]) -> None:
    """Keep the last invocation's figures (requests, retries, latency, ...) for the workbook."""
    info = read_run(layout) or {}
    info["last_invocation"] = [[label, value] for label, value in facts]
    write_json_atomic(layout.run_file, info)


def record_changes(layout: RunLayout, changes: dict[str, Any]) -> None:
    """Keep the last comparison with an older run (against, min_change, counts by kind)."""
    info = read_run(layout) or {}
    info["changes"] = changes
    write_json_atomic(layout.run_file, info)


@contextlib.contextmanager
def file_log(layout: RunLayout) -> Iterator[None]:
    """Also send the `pipeline` log to the run's pipeline.log while the block runs."""
    layout.root.mkdir(parents=True, exist_ok=True)
    handler = _QuietFileHandler(layout.log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.INFO)
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


class _QuietFileHandler(logging.FileHandler):
    """A log line that cannot be written (a full disk) is dropped, not printed as a traceback:
    the error that matters is reported by the write that failed."""

    ended = False
    """Closed by the end of its block: lines that still come are dropped."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        # A thread that outlives the block (a notifier giving up on its webhook) can still
        # hold this handler: FileHandler would open the file again for its line and leave it
        # open.
        if not self.ended:
            super().emit(record)

    def close(self) -> None:
        # Closing flushes what the disk refused before: that error would replace the one
        # that stopped the command (and lose the path it names).
        self.ended = True
        with contextlib.suppress(OSError):
            super().close()


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
