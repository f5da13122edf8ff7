"""The benchmark's mock API (in a process of its own) and what it saw.

Every contender of a scenario calls the same mock; the benchmark resets its counts before
each run and reads them after: requests by status, the arrival time of every calculate
request (monotonic seconds, the same clock as this process's `time.monotonic`), and the CPU
the mock's process has used.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

import requests

from pipeline.mockapi import MockProcess, MockSettings, start_mock_process


@dataclass(frozen=True)
class Seen:
    """What the mock saw during one run."""

    calculate: int
    by_status: dict[str, int]
    arrivals: list[float]
    mock_cpu_s: float
    throttled: list[float] = field(default_factory=list)
    """Arrival times of the requests answered 429."""

    @property
    def span_s(self) -> float:
        return self.arrivals[-1] - self.arrivals[0] if len(self.arrivals) > 1 else 0.0

    @property
    def rate(self) -> float:
        """Mean arrival rate over the run's request phase (first to last arrival), req/s."""
        return (len(self.arrivals) - 1) / self.span_s if self.span_s > 0 else 0.0

    def share(self, status: str) -> float:
        return self.by_status.get(status, 0) / max(1, sum(self.by_status.values()))


class BenchMock:
    """A mock in its own process, with a Session of the benchmark's own to read its stats."""

    def __init__(self, settings: MockSettings) -> None:
        self.settings = settings
        self._process: MockProcess = start_mock_process(settings)
        self._http = requests.Session()
        self._http.trust_env = False
        self._cpu_at_reset = 0.0

    @property
    def url(self) -> str:
        """The calculate URL."""
        return self._process.base_url + "/cg/api/pro"

    def reset(self) -> None:
        self._http.post(self._process.base_url + "/_mock/reset", timeout=10).raise_for_status()
        self._cpu_at_reset = self._stats()["process_cpu_s"]

    def seen(self) -> Seen:
        stats = self._stats()
        return Seen(
            calculate=int(stats["calculate"]),
            by_status={k: int(v) for k, v in stats["by_status"].items()},
            arrivals=[float(a) for a in stats["arrivals"]],
            mock_cpu_s=float(stats["process_cpu_s"]) - self._cpu_at_reset,
            throttled=[float(a) for a in stats.get("throttled", [])],
        )

    def _stats(self) -> dict:  # type: ignore[type-arg]
        response = self._http.get(self._process.base_url + "/_mock/stats", timeout=30)
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._http.close()
        self._process.stop()

    def __enter__(self) -> BenchMock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def max_window(arrivals: Sequence[float], width_s: float = 1.0) -> int:
    """The most arrivals in any window [t, t + width_s) (sorted input)."""
    best = 0
    for i, start in enumerate(arrivals):
        best = max(best, bisect.bisect_left(arrivals, start + width_s, i) - i)
    return best
