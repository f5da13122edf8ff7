"""What the Summary sheet says about a run besides its rows: `RunFacts`.

Plain data, in a module of its own so that the merge's entry (run.py) can build it without
importing the workbook writer (openpyxl, polars), which a run needs only at its end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class RunFacts:
    """What the Summary says about the run besides its rows (merge/run.py reads it from the
    run folder). None: not known, not said. `run`, `last_invocation`, `settings`: (label,
    value) lines."""

    started: str | None = None
    finished: str | None = None  # None: the run has not finished
    duration_seconds: float | None = None  # every invocation of the run together
    rate: float | None = None  # users per second over the run
    simulated: bool | None = None  # the embedded mock API answered
    endpoint: str | None = None  # the API's URL, when not simulated
    run: Sequence[tuple[str, object]] = ()
    last_invocation: Sequence[tuple[str, object]] = ()
    settings: Sequence[tuple[str, object]] = ()
    changes: Sequence[tuple[str, object]] = ()
    """What changed since a compared run (compare.py); empty: no comparison."""
