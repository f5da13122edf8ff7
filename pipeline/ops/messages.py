"""The words of each notification, and the reason a run ended.

Every message says which run (host and folder) and what happened, in one line of `text`, and
repeats the figures as `fields`. Only counts, times, paths and exit codes: no key, no user.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline import schema
from pipeline.config import Config
from pipeline.errors import (
    EXIT_FAILED_ROWS,
    EXIT_INTERRUPTED,
    EXIT_LOCAL,
    EXIT_OK,
    EXIT_OUTAGE,
    EXIT_REFUSED,
    EXIT_USAGE,
    PipelineError,
)
from pipeline.ops.alerts import DOWN, STALLED
from pipeline.ops.notify import Message
from pipeline.state.store import RunLayout, read_run
from pipeline.view.facts import Facts
from pipeline.view.progress import format_duration

Where = Mapping[str, Any]

_MEANING = {
    EXIT_OK: "finished, no row failed",
    EXIT_FAILED_ROWS: "finished, some rows failed (`pipeline rerun-failed` retries them)",
    EXIT_USAGE: "a usage, config or input error; see pipeline.log",
    EXIT_OUTAGE: "the API stayed unavailable; state saved, rerun to resume",
    EXIT_REFUSED: "the API refused the run; state saved, check the key and url, then rerun",
    EXIT_LOCAL: "a local failure (disk, permissions, a worker process); state saved",
    EXIT_INTERRUPTED: "interrupted (Ctrl+C or SIGTERM); state saved, rerun to resume",
}


def _run(where: Where) -> str:
    return f"Run {where['host']}:{where['folder']}"


def started(where: Where, total: int, done: int, config: Config) -> Message:
    rate = config.processing.rate_limit
    text = f"{_run(where)} started: {total:,} users"
    if done:
        text += f" ({done:,} done before it resumed)"
    text += f"; rate {rate:g}/s." if rate else "; no client-side rate limit."
    return Message("started", text, {**where, "total": total, "done": done, "rate_limit": rate})


def progress(where: Where, step: float, done: int, total: int, eta: float | None) -> Message:
    left = format_duration(eta) if eta is not None else "unknown"
    text = f"{_run(where)}: {step:g}% done ({done:,}/{total:,} users), ETA {left}."
    fields = {**where, "percent": step, "done": done, "total": total, "eta_seconds": eta}
    return Message("progress", text, fields)


def stall(where: Where, change: str, minutes: float) -> Message:
    if change == STALLED:
        text = f"{_run(where)} has stalled: no row finished for {minutes:g} min while not paused."
        return Message("stalled", text, {**where, "minutes": minutes})
    return Message("moving", f"{_run(where)} is moving again.", dict(where))


def outage(where: Where, edge: str, lasted: float, give_up_after: float) -> Message:
    if edge == DOWN:
        text = (
            f"{_run(where)}: the API is unavailable; requests are held and probed. The run "
            f"stops (exit 3) if it stays down for {format_duration(give_up_after)}."
        )
        return Message("api_down", text, dict(where))
    text = f"{_run(where)}: the API answers again after {format_duration(lasted)}."
    return Message("api_up", text, {**where, "down_seconds": round(lasted, 1)})


def finished(
    where: Where,
    code: int,
    facts: Facts,
    config: Config,
    layout: RunLayout,
    counts: Mapping[str, int],
) -> Message:
    """`counts`: the whole run's rows by state, as the coordinator counted them at its end."""
    rows = {state: counts.get(state, 0) for state in schema.STATES}
    workbook = config.excel_path.resolve() if config.excel_path.exists() else None
    # The whole run's time, every invocation of it (run.json adds each one up).
    spent = float((read_run(layout) or {}).get("elapsed_seconds") or facts.elapsed)
    text = (
        f"{_run(where)} finished (exit {code}) in {format_duration(spent)}: "
        + ", ".join(f"{state} {n:,}" for state, n in rows.items())
        + (f". Workbook: {workbook}" if workbook else ". No workbook written.")
    )
    fields = {
        **where,
        "exit_code": code,
        "rows": rows,
        "duration_seconds": round(spent, 1),
        "workbook": str(workbook) if workbook else None,
    }
    return Message("finished", text, fields)


def stopped(where: Where, code: int, reason: str) -> Message:
    text = f"{_run(where)} stopped (exit {code}): {reason}"
    return Message("stopped", text, {**where, "exit_code": code, "reason": reason})


def reason(code: int, error: BaseException | None, *, stopped_by_control: bool) -> str:
    """Why a run ended with `code`, for people: the pipeline's own message for outages,
    refusals and local failures (they name paths and settings, never rows); a fixed text
    otherwise, since a usage or input error may quote the input."""
    if code == EXIT_INTERRUPTED and stopped_by_control:
        return "stopped by `pipeline control stop`; state saved, rerun to resume"
    meaning = _MEANING.get(code, f"exit code {code}")
    if isinstance(error, PipelineError) and code in (EXIT_OUTAGE, EXIT_REFUSED, EXIT_LOCAL):
        return f"{meaning}: {error}"
    if error is not None and not isinstance(error, PipelineError | KeyboardInterrupt):
        return f"{meaning}: {type(error).__name__}"
    return meaning
