"""Contenders run side by side (A B A B ... rounds, medians) and the table they make.

Every figure that compares is a ratio taken within one round (contender / reference, run one
after the other on the same machine) and then the median over the rounds, so a machine that
slows down for a while slows both sides of a ratio alike.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import measure
from bench.measure import Measured
from bench.server import BenchMock, Seen

FAILURES: list[str] = []
"""One line per contender run that ended with an unexpected exit code."""
ONLY: list[str] = []
"""When not empty: run only the contenders whose name holds one of these strings."""


@dataclass(frozen=True)
class Contender:
    name: str
    command: Callable[[Path], list[str]]
    """The command line, given a fresh temporary folder (also its working folder)."""
    pty: bool = False
    ok_codes: tuple[int, ...] = (0,)


@dataclass
class Sample:
    measured: Measured
    seen: Seen | None
    folder: Path


@dataclass
class Row:
    scenario: str
    contender: str
    users_s: float | None = None
    """Users (or rows) per second, wall time of the whole command."""
    server_rate: float | None = None
    """Calculate requests/s at the mock, first to last arrival."""
    cpu_ms: float | None = None
    """Client CPU (user + system, the whole process tree) per user, milliseconds."""
    rss_mb: float | None = None
    mock_cpu_ms: float | None = None
    ratio: float | None = None
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)

    def add_note(self, text: str) -> None:
        self.note = f"{self.note}; {text}" if self.note else text


HEADER = (
    "| scenario | contender | users/s | server req/s | client CPU ms/user | peak RSS MB "
    "| mock CPU ms/req | ratio | note |\n|---|---|---:|---:|---:|---:|---:|---:|---|"
)


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    if digits == 0 and abs(value) < 10:
        digits = 2 if abs(value) >= 0.1 else 4
    return f"{value:,.{digits}f}"


def render(row: Row) -> str:
    cells = [
        row.scenario,
        row.contender,
        fmt(row.users_s),
        fmt(row.server_rate),
        fmt(row.cpu_ms, 3),
        fmt(row.rss_mb),
        fmt(row.mock_cpu_ms, 3),
        "ref" if row.ratio == 1.0 and "ref" in row.note else fmt(row.ratio, 3),
        row.note,
    ]
    return "| " + " | ".join(cells) + " |"


def emit(rows: Sequence[Row]) -> None:
    for row in rows:
        print(render(row), flush=True)


def run_rounds(
    contenders: Sequence[Contender],
    rounds: int,
    mock: BenchMock | None,
    *,
    keep: Callable[[Contender, Sample], None] | None = None,
) -> dict[str, list[Sample]]:
    """Run each contender once per round, in order; `keep` sees each sample before its
    folder is removed."""
    contenders = [c for c in contenders if not ONLY or any(o in c.name for o in ONLY)]
    samples: dict[str, list[Sample]] = {c.name: [] for c in contenders}
    for _ in range(rounds):
        for contender in contenders:
            folder = Path(tempfile.mkdtemp(prefix="cg-bench-"))
            try:
                if mock is not None:
                    mock.reset()
                m = measure.run(contender.command(folder), cwd=folder, pty=contender.pty)
                seen = mock.seen() if mock is not None else None
                sample = Sample(m, seen, folder)
                check_exit(contender.name, m, contender.ok_codes)
                if keep is not None:
                    keep(contender, sample)
                samples[contender.name].append(sample)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
    return samples


def check_exit(name: str, m: Measured, ok_codes: Sequence[int]) -> bool:
    if m.exit_code in ok_codes:
        return True
    tail = " / ".join(m.output.strip().splitlines()[-3:])
    FAILURES.append(f"{name}: exit {m.exit_code}: {tail}")
    print(f"# {name} exited {m.exit_code}: {tail}", file=sys.stderr, flush=True)
    return False


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(
    scenario: str,
    samples: dict[str, list[Sample]],
    users: int,
    reference: str | None,
) -> list[Row]:
    """One row per contender: medians over rounds; ratio = median of per-round
    users/s over the reference's users/s in the same round."""
    rows = []
    ref = samples.get(reference or "", [])
    for name, runs in samples.items():
        speeds = [users / s.measured.wall_s for s in runs]
        ratios = [
            (users / s.measured.wall_s) / (users / r.measured.wall_s)
            for s, r in zip(runs, ref, strict=False)
        ]
        seen = [s.seen for s in runs if s.seen is not None]
        rows.append(
            Row(
                scenario,
                name,
                users_s=median(speeds),
                server_rate=median([x.rate for x in seen]) if seen else None,
                cpu_ms=median([s.measured.cpu_s * 1000 / users for s in runs]),
                rss_mb=median([s.measured.peak_rss_mb for s in runs]),
                mock_cpu_ms=median([x.mock_cpu_s * 1000 / max(1, x.calculate) for x in seen])
                if seen
                else None,
                ratio=median(ratios) if reference else None,
                note="reference" if name == reference else _spread(ratios),
            )
        )
    return rows


def _spread(ratios: Sequence[float]) -> str:
    """The per-round ratios behind a median, when there are several."""
    if len(ratios) < 2:
        return ""
    return f"rounds {min(ratios):.3f}-{max(ratios):.3f}"


def server_ratio(samples: dict[str, list[Sample]], a: str, b: str) -> float | None:
    """Median over rounds of a's request rate at the mock over b's (first to last arrival:
    the request phase, without either side's start-up and exit)."""
    pairs = zip(samples.get(a, []), samples.get(b, []), strict=False)
    return median(
        [x.seen.rate / y.seen.rate for x, y in pairs if x.seen and y.seen and y.seen.rate]
    )


def ratio_between(samples: dict[str, list[Sample]], a: str, b: str) -> float | None:
    """Median over rounds of wall(b) / wall(a): how many times faster a is than b."""
    pairs = zip(samples.get(a, []), samples.get(b, []), strict=False)
    return median([y.measured.wall_s / x.measured.wall_s for x, y in pairs])


def scratch_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="cg-bench-"))


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
