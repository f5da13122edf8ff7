"""The mock's gateway kinds: pure decisions with a fake clock, then the headers on a real port."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest
import requests

from pipeline.api.classify import parse_retry_after
from pipeline.config import build_config
from pipeline.errors import ConfigError
from pipeline.mockapi import (
    FixedWindow,
    MockServer,
    MockSettings,
    SlidingWindow,
    TokenBucket,
    make_gateway,
    parse_schedule,
)

BODY = {"amazon_spends": 5000}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admitted(gateway: object, times: list[float]) -> list[bool]:
    return [gateway.admit(t).admitted for t in times]  # type: ignore[attr-defined]


def test_sliding_window_counts_any_span_of_the_window() -> None:
    window = SlidingWindow(2)
    assert admitted(window, [0.0, 0.1, 0.2]) == [True, True, False]
    assert window.admit(0.5).wait_s == pytest.approx(0.5)
    assert admitted(window, [1.0, 1.05, 1.1, 1.15]) == [True, False, True, False]
    ten = SlidingWindow(3, window_s=10.0)  # 30 in any 10 s
    assert sum(admitted(ten, [i * 0.1 for i in range(40)])) == 30
    assert ten.admit(9.9).remaining == 0 and ten.admit(10.05).admitted


def test_fixed_window_resets_at_its_boundary_whatever_came_just_before() -> None:
    fixed = FixedWindow(3, window_s=1.0)
    assert admitted(fixed, [0.0, 0.9, 0.95, 0.99]) == [True, True, True, False]
    refused = fixed.admit(0.99)
    assert refused.wait_s == pytest.approx(0.01) and refused.reset_s == pytest.approx(0.01)
    # Six in 0.1 s across the boundary: what makes a fixed window unlike a sliding one.
    assert admitted(fixed, [1.0, 1.01, 1.02, 1.03]) == [True, True, True, False]
    ten = FixedWindow(60, window_s=10.0)
    first = ten.admit(100.0)
    assert (first.limit, first.remaining, first.reset_s) == (600, 599, 10.0)
    assert sum(admitted(ten, [100.0 + i * 0.01 for i in range(700)])) == 599
    assert ten.admit(110.0).admitted


def test_token_bucket_allows_its_burst_then_the_rate() -> None:
    bucket = TokenBucket(80)  # burst: a quarter second = 20 tokens
    assert bucket.capacity == 20
    assert sum(admitted(bucket, [0.0] * 30)) == 20
    refused = bucket.admit(0.0)
    assert refused.wait_s == pytest.approx(1 / 80) and refused.remaining == 0
    assert refused.reset_s == pytest.approx(20 / 80)
    # Then one every 1/80 s: a steady 80/s is all admitted, 100/s is not.
    assert all(admitted(bucket, [1.0 + i / 80 for i in range(160)]))
    later = [3.0 + i / 100 for i in range(200)]
    assert sum(admitted(bucket, later)) == 20 + 159  # the full bucket, then 80/s
    assert TokenBucket(10, burst=3).capacity == 3


def test_set_rate_follows_a_schedule_without_losing_the_state() -> None:
    bucket = make_gateway("token-bucket", 80)
    assert sum(admitted(bucket, [0.0] * 30)) == 20
    bucket.set_rate(30)
    assert bucket.capacity == 8 and not bucket.admit(0.0).admitted
    fixed = make_gateway("fixed", 10)
    assert sum(admitted(fixed, [0.0] * 5)) == 5
    fixed.set_rate(4)
    assert not fixed.admit(0.1).admitted and fixed.admit(1.0).admitted


@pytest.mark.parametrize(
    ("text", "changes"),
    [("", ()), ("20:30, 40:80", ((20.0, 30.0), (40.0, 80.0))), ("0.5:1", ((0.5, 1.0),))],
)
def test_parse_schedule(text: str, changes: tuple[tuple[float, float], ...]) -> None:
    assert parse_schedule(text) == changes


@pytest.mark.parametrize("text", ["20", "20:0", "x:3", "-1:3", "20:inf"])
def test_parse_schedule_names_the_bad_part(text: str) -> None:
    with pytest.raises(ValueError, match="SECONDS:RATE"):
        parse_schedule(text)


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False
        yield s


def post(session: requests.Session, mock: MockServer) -> requests.Response:
    return session.post(mock.base_url + "/cg/api/pro", json=BODY, timeout=10)


def fast(**changes: object) -> MockSettings:
    return MockSettings(latency_ms=0, jitter_ms=0, **changes)  # type: ignore[arg-type]


def test_quota_headers_on_every_answer(session: requests.Session) -> None:
    clock = FakeClock()
    with MockServer(fast(rate_limit=2, limit_headers="ietf"), clock=clock) as mock:
        first, second, third = (post(session, mock) for _ in range(3))
    assert first.status_code == 200 and first.headers["RateLimit-Limit"] == "2"
    assert [r.headers["RateLimit-Remaining"] for r in (first, second, third)] == ["1", "0", "0"]
    assert third.status_code == 429 and third.headers["RateLimit-Reset"] == "1"
    with MockServer(fast(rate_limit=5, limit_headers="x"), clock=clock) as mock:
        answer = post(session, mock)
    assert (
        answer.headers["X-RateLimit-Remaining"] == "4" and "RateLimit-Limit" not in answer.headers
    )
    with MockServer(fast(rate_limit=5), clock=clock) as mock:
        assert not any("ratelimit" in name.lower() for name in post(session, mock).headers)


def test_retry_after_as_seconds_as_a_date_or_absent(session: requests.Session) -> None:
    clock = FakeClock()
    answers = {}
    for style in ("seconds", "date", "none"):
        settings = fast(rate_limit=0.1, limit_kind="fixed", limit_window_s=10.0, retry_after=style)
        with MockServer(settings, clock=clock) as mock:
            assert post(session, mock).status_code == 200
            clock.now += 4.2
            answers[style] = post(session, mock)
    assert {a.status_code for a in answers.values()} == {429}
    assert answers["seconds"].headers["Retry-After"] == "6"
    when = parse_retry_after(answers["date"].headers["Retry-After"])
    assert when is not None and 5.8 <= when <= 8.0
    assert parsedate_to_datetime(answers["date"].headers["Retry-After"]).tzinfo is not None
    assert "Retry-After" not in answers["none"].headers


def test_schedule_counts_from_the_first_request_and_restarts_on_reset(
    session: requests.Session,
) -> None:
    clock = FakeClock()
    settings = fast(rate_limit=3, limit_kind="fixed", rate_schedule="10:1,20:3")
    with MockServer(settings, clock=clock) as mock:
        clock.now += 50  # before the first request: the schedule has not started

        def window() -> list[int]:
            statuses = [post(session, mock).status_code for _ in range(4)]
            clock.now += 1
            return statuses

        assert window() == [200, 200, 200, 429]
        clock.now += 9
        assert window() == [200, 429, 429, 429]
        clock.now += 9
        assert window() == [200, 200, 200, 429]
        mock.reset_stats()
        assert window() == [200, 200, 200, 429]
        stats = mock.stats()
    assert len(stats["throttled"]) == 1 and stats["calculate"] == 4


def test_settings_and_config_reject_bad_limit_values() -> None:
    for change in (
        {"limit_kind": "leaky"},
        {"retry_after": "never"},
        {"limit_headers": "all"},
        {"limit_window_s": 0},
        {"limit_burst": -1},
        {"rate_limit": 5, "rate_schedule": "x"},
        {"rate_schedule": "10:5"},
    ):
        with pytest.raises(ValueError, match=f"MockSettings.{next(iter(change))}|rate_sched"):
            MockSettings(**change)  # type: ignore[arg-type]
    raw = {"request": {"amazon_spends": "a"}}
    config = build_config({**raw, "mock": {"limit_kind": "token-bucket", "limit_burst": 5}})
    assert config.mock.limit_kind == "token-bucket" and config.mock.limit_burst == 5
    for table, message in (
        ({"limit_kind": "leaky"}, r"\[mock\] limit_kind = 'leaky': must be one of"),
        ({"limit_window": 0.0}, r"\[mock\] limit_window = 0.0: must be more than 0"),
        ({"rate_schedule": "10"}, r"\[mock\] rate_schedule = '10': '10' must be SECONDS:RATE"),
        ({"rate_schedule": "10:5"}, "needs rate_limit > 0"),
    ):
        with pytest.raises(ConfigError, match=message):
            build_config({**raw, "mock": table})


def test_mock_api_flags_set_the_gateway(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    flags = ["--rate-limit", "0.05", "--limit-kind", "fixed", "--limit-window", "20"]
    flags += ["--retry-after", "date", "--limit-headers", "x", "--rate-schedule", "60:2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "mock-api", "--port", str(port), *flags],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "0.05 req/s fixed 20 s, Retry-After date, x quota headers, schedule 60:2" in line
        statuses, headers = [], []
        deadline = time.monotonic() + 10
        while len(statuses) < 2:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/cg/api/pro", data=b'{"amazon_spends": 1}'
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    statuses.append(answer.status)
                    headers.append(answer.headers)
            except urllib.error.HTTPError as refused:
                statuses.append(refused.code)
                headers.append(refused.headers)
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert statuses == [200, 429] and headers[0]["X-RateLimit-Limit"] == "1"
        assert "GMT" in headers[1]["Retry-After"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
