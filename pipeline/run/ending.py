"""How an invocation's requests ended, and what the user is told: its exit code and one line.

A refusal by the API outranks an outage, which outranks an interruption (Ctrl+C, SIGTERM, a
shard left unfinished): the line names the cause the user must act on first. In every case
the finished rows are saved and the same command resumes. Only an invocation whose every
shard finished goes on to compare and merge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import EXIT_INTERRUPTED, EXIT_OUTAGE, RefusedError
from pipeline.run.pool import PoolResult

log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class Ending:
    interrupted: bool = False
    outage: bool = False
    """The API stayed unavailable for longer than `[retry] give_up_after`."""
    refused: str = ""
    """Why the API refuses the run; "" = it does not."""

    @classmethod
    def of(cls, result: PoolResult) -> Ending:
        unfinished = not all(report.finished for report in result.reports)
        return cls(result.interrupted or unfinished, result.outage, result.refused)

    @property
    def finished(self) -> bool:
        return not (self.interrupted or self.outage or self.refused)


def stop_code(ending: Ending, root: Path, give_up_after: float, retry_failed: bool) -> int | None:
    """Say why the invocation stopped and return its exit code; None when it finished. A
    refused run raises `RefusedError` (exit 4); `root`: the run folder the rows are saved in."""
    if ending.refused:
        raise RefusedError(
            f"{ending.refused}. No row was marked failed, and the finished ones are saved in "
            f"{root}: fix this, then run the same command again to go on"
        )
    if ending.outage:
        log.error(
            "Stopped: the API stayed unavailable for longer than [retry] give_up_after "
            "(%g s). Finished rows are saved in %s; run the same command again to resume.",
            give_up_after,
            root,
        )
        return EXIT_OUTAGE
    if ending.interrupted:
        command = "pipeline rerun-failed" if retry_failed else "pipeline run"
        log.warning(
            "Interrupted: finished rows are saved in %s; run `%s` with the same settings to "
            "resume.",
            root,
            command,
        )
        return EXIT_INTERRUPTED
    return None
