"""Partner windows (traffic/windows.py): parsing, the rate at a given time, the next change,
the duration through them, and what `plan` and the live view say. Times are given, no clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pipeline.config import build_config
from pipeline.errors import ConfigError
from pipeline.traffic.adaptive import Feedback, Pacer, PacerPolicy
from pipeline.traffic.windows import (
    duration_s,
    in_force,
    next_change,
    parse_windows,
    rate_at,
    schedule_text,
)

IST = "Asia/Kolkata"  # UTC+05:30, no daylight saving time
BUSINESS = parse_windows("w", [{"from": "09:00", "to": "18:00", "rate": 10.0, "tz": IST}])


def utc(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=timezone.utc)


def test_rate_in_and_out_of_a_window_in_its_own_time_zone() -> None:
    assert rate_at(BUSINESS, utc(3, 30), 20.0) == 10.0  # 09:00 IST
    assert rate_at(BUSINESS, utc(3, 29), 20.0) == 20.0
    assert rate_at(BUSINESS, utc(12, 29), 20.0) == 10.0  # 17:59 IST
    assert rate_at(BUSINESS, utc(12, 30), 0.0) == 0.0  # 18:00 IST: no client limit
    assert in_force(BUSINESS, utc(5)) == BUSINESS[0]


def test_windows_past_midnight_all_day_and_overlaps() -> None:
    night = parse_windows("w", [{"from": "22:00", "to": "06:00", "rate": 50, "tz": "UTC"}])
    assert [rate_at(night, utc(h), 5.0) for h in (21, 22, 23, 0, 5, 6)] == [5, 50, 50, 50, 50, 5]
    always = parse_windows("w", [{"from": "00:00", "to": "00:00", "rate": 7, "tz": "UTC"}])
    assert rate_at(always, utc(13), 0.0) == 7.0 and next_change(always, utc(13), 0.0) is None
    both = night + parse_windows("w", [{"from": "23:00", "to": "23:30", "rate": 2, "tz": "UTC"}])
    assert rate_at(both, utc(23, 10), 0.0) == 2.0  # the lowest rate holds


def test_daylight_saving_time_is_the_zones_own() -> None:
    ny = parse_windows("w", [{"from": "09:00", "to": "17:00", "rate": 5, "tz": "America/New_York"}])
    assert rate_at(ny, utc(14, day=2), 0.0) == 5.0  # March 2: EST, 09:00 is 14:00 UTC
    assert rate_at(ny, utc(13, day=20), 0.0) == 5.0  # March 20: EDT, 09:00 is 13:00 UTC
    assert rate_at(ny, utc(13, day=2), 0.0) == 0.0


def test_next_change_and_the_line_people_read() -> None:
    assert next_change(BUSINESS, utc(1), 20.0) == utc(3, 30)
    assert next_change(BUSINESS, utc(5), 20.0) == utc(12, 30)
    text = schedule_text(BUSINESS, utc(5), 20.0)
    assert text == "window 09:00-18:00 Asia/Kolkata: 10 req/s; from 18:00 20 req/s (in 7h30m)"
    text = schedule_text(BUSINESS, utc(13), 0.0)
    assert text == "outside the windows: no client limit; from 09:00 10 req/s (in 14h30m)"
    assert schedule_text((), utc(13), 0.0) == ""


def test_duration_through_the_windows() -> None:
    # 100 req/s outside, 10 in the window: 36,000 requests from 17:00 IST take one hour
    # at 10/s (36,000 would be 6 minutes at 100/s, but the first hour holds 36,000).
    start = utc(11, 30)  # 17:00 IST
    assert duration_s(BUSINESS, 36_000, 100.0, 0.0, start) == pytest.approx(3600.0)
    # 72,000: an hour at 10/s, then 36,000 at 100/s after 18:00: 6 minutes more.
    assert duration_s(BUSINESS, 72_000, 100.0, 0.0, start) == pytest.approx(3600.0 + 360.0)
    # Before the window the run's own capacity (50/s) holds, then the window's 10/s.
    early = utc(3, 20)  # 08:50 IST
    assert duration_s(BUSINESS, 30_000 + 6_000, 50.0, 0.0, early) == pytest.approx(600 + 600)
    assert duration_s(BUSINESS, 0, 50.0, 0.0, early) == 0.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            {"from": "9:00", "to": "18:00", "rate": 1, "tz": IST},
            r"\[0\]\.from = '9:00': must be a time of day, HH:MM",
        ),
        ({"from": "09:00", "to": "25:00", "rate": 1, "tz": IST}, r"\[0\]\.to = '25:00'"),
        (
            {"from": "09:00", "to": "18:00", "rate": 0, "tz": IST},
            r"\[0\]\.rate = 0: must be a number",
        ),
        (
            {"from": "09:00", "to": "18:00", "rate": 1, "tz": "Mars/Base"},
            r"\[0\]\.tz = 'Mars/Base': not a known time zone",
        ),
        (
            {"from": "09:00", "to": "18:00", "rate": 1},
            r"\[0\]: needs exactly the keys from, to, rate, tz",
        ),
    ],
)
def test_config_errors_name_the_window_and_the_rule(value: dict[str, object], message: str) -> None:
    raw = {"request": {"amazon_spends": "a"}, "processing": {"windows": [value]}}
    with pytest.raises(ConfigError, match=r"\[processing\] windows" + message):
        build_config(raw)
    with pytest.raises(ConfigError, match="must be a list of tables"):
        build_config({**raw, "processing": {"windows": "09:00-18:00"}})


def test_config_keeps_the_windows_and_run_json_can_hold_them(tmp_path: Path) -> None:
    import json

    from pipeline.state.runinfo import settings_of

    window = {"from": "09:00", "to": "18:00", "rate": 10.0, "tz": IST}
    config = build_config({"request": {"amazon_spends": "a"}, "processing": {"windows": [window]}})
    assert config.processing.windows == BUSINESS
    assert json.loads(json.dumps(settings_of(config)))["processing"]["windows"] == [window]


def test_pacer_follows_a_window_down_at_once_and_climbs_after_it() -> None:
    pacer = Pacer(PacerPolicy(), now=0.0)
    pacer.rate = 300.0
    pacer.set_ceiling(10.0)
    assert pacer.rate == 10.0
    ok = 0
    for step in range(1, 10):
        ok += 2
        assert pacer.update(Feedback(now=step * 0.2, ok_total=ok, answers_total=ok)) <= 10.0
    pacer.set_ceiling(0.0)  # the window ended: slow start again, from 10
    for step in range(10, 20):
        ok += int(pacer.rate * 0.2)
        pacer.update(Feedback(now=step * 0.2, ok_total=ok, answers_total=ok))
    assert pacer.rate > 40.0


@pytest.mark.parametrize("adaptive", [False, True])
def test_watch_holds_the_window_rate_and_follows_its_end(adaptive: bool) -> None:
    import multiprocessing
    import threading

    from pipeline.traffic.limiter import Limiter
    from pipeline.traffic.shared import SharedLimits
    from pipeline.traffic.watch import TrafficWatch

    window = {"from": "09:00", "to": "18:00", "rate": 10.0, "tz": IST}
    config = build_config(
        {
            "request": {"amazon_spends": "a"},
            "processing": {"windows": [window], "rate_limit": 20.0, "adaptive": adaptive},
        }
    )
    limiter = Limiter(SharedLimits(multiprocessing.get_context("spawn"), 20.0, 4), None)
    clock, wall = [0.0], [utc(12, 0)]  # 17:30 in Kolkata
    watch = TrafficWatch(config, limiter, threading.Event(), lambda: clock[0], lambda: wall[0])
    assert limiter.rate() == 10.0
    assert watch.snapshot().window.startswith("window 09:00-18:00 Asia/Kolkata: 10 req/s")
    assert watch.snapshot().rate_limit == 10.0
    wall[0] += timedelta(minutes=31)
    for _ in range(6):
        clock[0] += 0.2
        watch.tick()
    assert watch.snapshot().window.startswith("outside the windows: 20 req/s; from 09:00")
    assert limiter.rate() == 20.0  # adaptive: a slow start from 10, at least 20 at once
