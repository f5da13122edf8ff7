"""The run folder made ready for an invocation: what is refused before anything is written,
the fingerprint check, sharding the input, and what an earlier invocation left behind.

A usage, config or input error (exit 2) must leave the output folder as it was, so what can
be checked without writing (`preflight`) is checked before the coordinator takes the lock;
`prepare` writes, under the lock.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

from pipeline.api.endpoint import check_key
from pipeline.config import Config
from pipeline.errors import RunStateError
from pipeline.run.options import RunOptions
from pipeline.state import runinfo
from pipeline.state.answers import find_repeated
from pipeline.state.folder import check_folder
from pipeline.state.store import RunLayout, changed_keys, read_run, write_json_atomic
from pipeline.state.upkeep import discard_run, drop_stale_checkpoints, remove_damaged_results

log = logging.getLogger("pipeline")
Checked = tuple[dict[str, Any] | None, dict[str, Any]]
"""(the folder's run.json or None, this run's fingerprint)."""


def preflight(config: Config, options: RunOptions, layout: RunLayout) -> Checked:
    """What can be refused before anything is written: the folder, the input's columns, a
    run of other settings in the folder. Returns `check_run`'s answer."""
    from pipeline.inputs.shard import check_input  # polars: see _shard

    check_folder(layout.root)
    check_key(config)
    check_input(
        config.input.path, config.input.id_column, config.value_columns, config.input.sheet or None
    )
    return check_run(config, options, layout)


def check_run(config: Config, options: RunOptions, layout: RunLayout) -> Checked:
    """(the folder's run.json or None, this run's fingerprint); refuses a run of other
    settings, and `rerun-failed` without a run. Reads only."""
    info = None if options.fresh and not options.retry_failed else read_run(layout)
    fingerprint = runinfo.fingerprint(config, options.limit, info)
    if info is not None:
        changes = changed_keys(info.get("fingerprint"), fingerprint)
        if changes:
            raise RunStateError(
                f"{layout.root} holds a run of other settings ({', '.join(changes)} changed); "
                "use --fresh to start over or --out for another folder"
            )
    elif options.retry_failed:
        raise RunStateError(f"{layout.root}: no run to retry here; start one with `pipeline run`")
    return info, fingerprint


def prepare(
    config: Config, options: RunOptions, layout: RunLayout, checked: Checked
) -> dict[str, Any]:
    """Shard the input if not done; returns run.json. `checked` is `check_run`'s answer
    before the lock was taken; it is asked again if another run changed the folder since."""
    if options.fresh and not options.retry_failed:
        discard_run(layout, _outputs(config, layout))
    info, fingerprint = checked
    if read_run(layout) != info:
        info, fingerprint = check_run(config, options, layout)
    if info is None:
        discard_run(layout)  # shards or answers without a run.json belong to no known run
    if info is None or not info.get("input", {}).get("sharded"):
        info = _shard(config, options, layout, fingerprint)
    else:
        info = runinfo.record_settings(layout, config, _kept_shard_size(config, info))
    for name, problem in remove_damaged_results(layout):
        log.warning("Result shard %s was damaged (%s): its shard is done again.", name, problem)
    drop_stale_checkpoints(layout)
    return info


def _outputs(config: Config, layout: RunLayout) -> list[Path]:
    """The files a merge writes: the workbook and the exports named like it."""
    workbook = layout.root / config.output.excel
    return [workbook, workbook.with_suffix(".parquet"), workbook.with_suffix(".csv")]


def _kept_shard_size(config: Config, info: dict[str, Any]) -> int:
    """A resume keeps the run's shards: another shard size is said, not silently dropped."""
    kept = int(info["input"].get("shard_size") or config.processing.shard_size)
    if kept != config.processing.shard_size:
        log.warning(
            "Shard size %d is ignored: this run was sharded by %d rows and resumes so "
            "(--fresh starts over with the new size).",
            config.processing.shard_size,
            kept,
        )
    return kept


def _shard(
    config: Config, options: RunOptions, layout: RunLayout, fingerprint: dict[str, Any]
) -> dict[str, Any]:
    # Imported here, after the workers have been started: polars takes ~0.1 s to import.
    from pipeline.inputs.shard import shard_input

    shutil.rmtree(layout.input_dir, ignore_errors=True)  # a sharding cut short starts again
    info = runinfo.new_run(config, fingerprint)
    write_json_atomic(layout.run_file, info)
    started = time.monotonic()
    report = shard_input(
        config.input.path,
        layout=layout,
        id_column=config.input.id_column,
        value_columns=config.value_columns,
        shard_size=config.processing.shard_size,
        sheet=config.input.sheet or None,
        limit=options.limit,
    )
    unique, repeated = find_repeated(
        [layout.input_shard(n) for n in report.shards],
        tuple(config.request.items()),
        layout.repeated_file,
    )
    log.info(
        "Sharded %s: %d rows (%d invalid, %d distinct request bodies) into %d shard(s) in %.1fs",
        config.input.path,
        report.rows,
        report.invalid,
        unique,
        len(report.shards),
        time.monotonic() - started,
    )
    info["input"] = {
        "sharded": True,
        "shard_size": config.processing.shard_size,
        "rows": report.rows,
        "invalid": report.invalid,
        "shards": len(report.shards),
        "unique_bodies": unique,
        "repeated_bodies": repeated,
    }
    write_json_atomic(layout.run_file, info)
    return info
