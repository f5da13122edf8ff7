"""Partner windows: the rate a partner asks for at given hours of its day.

`[processing] windows = [{ from = "09:00", to = "18:00", rate = 10.0, tz = "Asia/Kolkata" }]`
is "at most 10 requests/s from 09:00 to 18:00, India time, every day"; outside every window
`[processing] rate_limit` holds (0 = none, the pacer finds the partner's limit). A window
whose `to` is not after its `from` runs past midnight ("22:00" to "06:00"); "00:00" to
"00:00" is the whole day. Where windows overlap, the lowest rate holds. The time zone is an
IANA name, read through `zoneinfo` (the `tzdata` package supplies the names where the system
has none), so daylight saving time is the zone's own.

Pure: the time comes in as an aware `datetime`; `schedule_text` and `duration_s` are what the
live view and `plan` show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

KEYS = ("from", "to", "rate", "tz")
_HORIZON_DAYS = 400  # how far `duration_s` walks the windows before it gives up


@dataclass(frozen=True)
class Window:
    start: time
    end: time
    rate: float
    """Requests/s, all processes together."""
    tz: str

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.tz)).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # past midnight, or all day

    def as_config(self) -> dict[str, object]:
        """The window as written in config.toml."""
        return {
            "from": f"{self.start:%H:%M}",
            "to": f"{self.end:%H:%M}",
            "rate": self.rate,
            "tz": self.tz,
        }

    def label(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.tz}"

    def edges_after(self, now: datetime) -> list[datetime]:
        """The window's starts and ends within two days after `now` (aware, UTC)."""
        zone = ZoneInfo(self.tz)
        day = now.astimezone(zone).date()
        edges = []
        for offset in range(-1, 3):
            for at in (self.start, self.end):
                when = datetime.combine(day + timedelta(days=offset), at, tzinfo=zone)
                if when > now:
                    edges.append(when)
        return edges


def parse_windows(where: str, value: object) -> tuple[Window, ...]:
    """The windows of `[processing] windows`; ValueError names the window and the rule."""
    if not isinstance(value, list):
        raise ValueError(f"{where}: must be a list of tables, e.g. {_EXAMPLE}")
    return tuple(_parse_one(f"{where}[{i}]", item) for i, item in enumerate(value))


_EXAMPLE = '[{ from = "09:00", to = "18:00", rate = 10.0, tz = "Asia/Kolkata" }]'


def _parse_one(where: str, item: object) -> Window:
    if not isinstance(item, Mapping):
        raise ValueError(f"{where}: must be a table like {_EXAMPLE[1:-1]}")
    unknown = set(item) - set(KEYS)
    if unknown or set(KEYS) - set(item):
        raise ValueError(f"{where}: needs exactly the keys {', '.join(KEYS)}")
    start, end = (_clock_time(f"{where}.{k}", item[k]) for k in ("from", "to"))
    rate = item["rate"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
        raise ValueError(f"{where}.rate = {rate!r}: must be a number of requests/s above 0")
    tz = item["tz"]
    try:
        ZoneInfo(tz) if isinstance(tz, str) and tz else None
    except (ZoneInfoNotFoundError, ValueError):
        tz = None
    if not isinstance(tz, str) or not tz:
        raise ValueError(
            f"{where}.tz = {item['tz']!r}: not a known time zone (an IANA name such as "
            '"Asia/Kolkata" or "UTC")'
        )
    return Window(start, end, float(rate), tz)


def _clock_time(where: str, value: object) -> time:
    if isinstance(value, str):
        try:
            hours, minutes = value.split(":")
            if len(hours) == 2 and len(minutes) == 2:
                return time(int(hours), int(minutes))
        except ValueError:
            pass
    raise ValueError(f"{where} = {value!r}: must be a time of day, HH:MM")


def rate_at(windows: Sequence[Window], now: datetime, base: float) -> float:
    """Requests/s the partner allows at `now`: the lowest rate of the windows in force, else
    `base` (0 = no client-side limit)."""
    rates = [w.rate for w in windows if w.contains(now)]
    return min(rates) if rates else base


def in_force(windows: Sequence[Window], now: datetime) -> Window | None:
    held = [w for w in windows if w.contains(now)]
    return min(held, key=lambda w: w.rate) if held else None


def next_change(windows: Sequence[Window], now: datetime, base: float) -> datetime | None:
    """When the rate next changes after `now`; None without windows (or if it never does)."""
    current = rate_at(windows, now, base)
    for edge in sorted(e for w in windows for e in w.edges_after(now)):
        if rate_at(windows, edge, base) != current:
            return edge
    return None


def schedule_text(windows: Sequence[Window], now: datetime, base: float) -> str:
    """One line for a person: the window in force (or none) and the next change."""
    if not windows:
        return ""
    held = in_force(windows, now)
    text = (
        f"window {held.label()}: {held.rate:g} req/s"
        if held is not None
        else f"outside the windows: {_rate_text(base)}"
    )
    change = next_change(windows, now, base)
    if change is not None:
        local = change.astimezone(ZoneInfo((held or windows[0]).tz))
        text += (
            f"; from {local:%H:%M} {_rate_text(rate_at(windows, change, base))} "
            f"(in {_span(change - now)})"
        )
    return text


def duration_s(
    windows: Sequence[Window], requests: int, capacity: float, base: float, start: datetime
) -> float:
    """Seconds to send `requests` from `start` when the run can do `capacity` requests/s and
    the windows (else `base`, 0 = none) hold it lower; inf if it would take over a year."""
    if requests <= 0:
        return 0.0
    left, now = float(requests), start
    horizon = start + timedelta(days=_HORIZON_DAYS)
    while now < horizon:
        limit = rate_at(windows, now, base)
        rate = min(capacity, limit) if limit > 0 else capacity
        change = next_change(windows, now, base) or horizon
        span = (change - now).total_seconds()
        if rate * span >= left:
            return (now - start).total_seconds() + left / rate
        left -= rate * span
        now = change
    return math.inf


def _rate_text(rate: float) -> str:
    return f"{rate:g} req/s" if rate > 0 else "no client limit"


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m"
