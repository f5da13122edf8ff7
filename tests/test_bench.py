"""scripts/bench.py must keep running: every scenario at its --quick size, in a subprocess.

Nothing about speed is checked (CI machines are shared and noisy); only that the benchmark
exits 0 and prints a table row for each scenario.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = (
    "1 overhead",
    "2 latency C=20",
    "2 latency C=200",
    "2b saturation C=400",
    "3 cards=100",
    "4 rate R=",
    "5 hidden limit",
    "6 sharding",
    "7 merge",
    "8 kill -9",
    "11 gateway: token bucket,",
    "11 gateway: fixed 10 s",
    "11 gateway: limit 80->30->80",
    "12 failing users",
)


@pytest.mark.timeout(540)  # the subprocess's own limit, 480 s, ends it first
def test_all_scenarios_run_at_quick_size(tmp_path: Path) -> None:
    bench = str(ROOT / "scripts" / "bench.py")
    done = subprocess.run(
        [sys.executable, bench, "all", "--quick", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    for scenario in SCENARIOS:
        assert any(row.startswith(f"| {scenario}") for row in rows), (scenario, done.stdout)
