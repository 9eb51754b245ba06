"""Quiet hours: recurring windows of local time during which a queue starts no job.

A window is a range of wall-clock times (``"08:00-18:00"``, or ``"22:00-06:00"`` across
midnight) on some days of the week, in one IANA time zone (``zoneinfo``). Jobs already running
when a window opens finish; waiting jobs start once it closes. A window that crosses midnight
belongs to the day it begins: ``"22:00-06:00"`` on ``fri`` holds from Friday 22:00 to Saturday
06:00.

Daylight saving time: a moment is quiet when its local wall-clock time lies in a window, as a
clock on the wall would say. On the night clocks go forward, local times in the skipped hour
never happen: a window that begins in it begins at the first moment after the jump, and one
that ends in it ends there too. On the night clocks go back, the repeated hour is judged by its
wall time both times it passes: a window covering it lasts an hour longer in real time, and a
window that begins or ends inside it applies to both passes. Quiet hours are in local time by
design: use ``timezone="UTC"`` for windows that never move.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from conveyor.errors import ConfigurationError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_MINUTES_A_DAY = 24 * 60


def _minutes(text: str) -> int:
    match = _TIME.match(text.strip())
    if match is None:
        raise ConfigurationError(f"a time of day reads HH:MM (24-hour clock), got {text!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if (hours, minutes) == (24, 0):
        return _MINUTES_A_DAY
    if hours > 23 or minutes > 59:
        raise ConfigurationError(f"no such time of day: {text!r}")
    return hours * 60 + minutes


def _day(text: str) -> int:
    name = text.strip().lower()[:3]
    if name not in DAYS:
        raise ConfigurationError(f"a day is one of {', '.join(DAYS)}, got {text!r}")
    return DAYS.index(name)


def parse_days(days: str | None) -> frozenset[int]:
    """``"mon-fri"``, ``"sat,sun"``, ``"mon-wed,fri"``, ``"*"`` or None (every day)."""
    if days is None or days.strip() in ("", "*"):
        return frozenset(range(7))
    chosen: set[int] = set()
    for part in days.split(","):
        if "-" in part:
            first, last = (_day(end) for end in part.split("-", 1))
            span = (last - first) % 7
            chosen.update((first + step) % 7 for step in range(span + 1))
        else:
            chosen.add(_day(part))
    return frozenset(chosen)


def _zone(name: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"a time zone is an IANA name such as 'Europe/Berlin', got {name!r}"
        )
    # Imported by the first quiet hours read: workers of queues without any skip its cost.
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"unknown time zone {name!r}: give an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


def check_timezone(name: str) -> None:
    """Refuse a name that is not an IANA time zone (ConfigurationError)."""
    _zone(name)


@dataclass(frozen=True)
class QuietHours:
    """Windows ``(start, end)`` in minutes since local midnight, on ``days`` (0 = Monday)."""

    windows: tuple[tuple[int, int], ...]
    days: frozenset[int]
    timezone: str

    @classmethod
    def parse(cls, windows: str, *, days: str | None = None, timezone: str = "UTC") -> QuietHours:
        """``windows``: ``"08:00-18:00"``, or several separated by commas."""
        if not isinstance(windows, str) or not windows.strip():
            raise ConfigurationError(f"quiet hours read HH:MM-HH:MM, got {windows!r}")
        spans: list[tuple[int, int]] = []
        for part in windows.split(","):
            if part.count("-") != 1:
                raise ConfigurationError(f"quiet hours read HH:MM-HH:MM, got {part.strip()!r}")
            start, end = (_minutes(t) for t in part.split("-"))
            if start in (end, _MINUTES_A_DAY):
                raise ConfigurationError(
                    f"a quiet window must not be empty or begin at 24:00, got {part.strip()!r}"
                )
            spans.append((start, end))
        _zone(timezone)
        return cls(tuple(spans), parse_days(days), timezone)

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.timezone)

    def describe(self) -> str:
        spans = ",".join(f"{_clock(a)}-{_clock(b)}" for a, b in self.windows)
        return f"{spans} {_describe_days(self.days)} {self.timezone}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "windows": [list(w) for w in self.windows],
                "days": sorted(self.days),
                "timezone": self.timezone,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> QuietHours:
        data = json.loads(text)
        return cls(
            tuple((int(a), int(b)) for a, b in data["windows"]),
            frozenset(int(d) for d in data["days"]),
            str(data["timezone"]),
        )

    def is_quiet(self, at: float) -> bool:
        """Whether ``at`` (UNIX seconds) falls in a window, by its local wall-clock time."""
        local = dt.datetime.fromtimestamp(at, self.zone)
        minute = local.hour * 60 + local.minute
        today = local.weekday()
        yesterday = (today - 1) % 7
        for start, end in self.windows:
            if start < end:
                if today in self.days and start <= minute < end:
                    return True
            elif (today in self.days and minute >= start) or (
                yesterday in self.days and minute < end
            ):
                return True
        return False

    def opens_at(self, at: float) -> float:
        """The first moment from ``at`` on that is not quiet (``at`` itself when it is not;
        ``inf`` when the windows cover every hour of the week)."""
        moment = at
        # Back-to-back windows (a night window and the next morning's) chain: follow them.
        for _ in range(len(self.windows) * 8 + 1):
            if not self.is_quiet(moment):
                return moment
            moment = self._window_end(moment)
        return math.inf  # quiet around the clock: never, until the windows change

    def _window_end(self, at: float) -> float:
        """The end of a window holding ``at``: the nearest local end time after it."""
        zone = self.zone
        local = dt.datetime.fromtimestamp(at, zone)
        ends: list[float] = []
        for _, end in self.windows:
            for days_ahead in (0, 1):
                day = local.date() + dt.timedelta(days=days_ahead)
                wall = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=end)
                # In a repeated hour the wall time happens twice (fold 0 and 1): either may be
                # the next end. In a skipped hour it never happens: the window ends at the jump.
                early, late = (wall.replace(tzinfo=zone, fold=f).timestamp() for f in (1, 0))
                if _exists(wall, zone):
                    candidates = [early, late]
                else:
                    candidates = [_jump(min(early, late), max(early, late), zone)]
                ends.extend(moment for moment in candidates if moment > at)
        return min(ends) if ends else at + 60.0


def _exists(wall: dt.datetime, zone: ZoneInfo) -> bool:
    """Whether the local wall time ``wall`` happens at all (it does not in a skipped hour)."""
    moment = wall.replace(tzinfo=zone).timestamp()
    return dt.datetime.fromtimestamp(moment, zone).replace(tzinfo=None) == wall


def _jump(before: float, after: float, zone: ZoneInfo) -> float:
    """The instant, to the second, at which the zone's offset changes between two moments."""
    offset = dt.datetime.fromtimestamp(before, zone).utcoffset()
    low, high = math.floor(before), math.ceil(after)
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return float(high)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _describe_days(days: frozenset[int]) -> str:
    if len(days) == 7:
        return "every day"
    ordered = sorted(days)
    if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{DAYS[ordered[0]]}-{DAYS[ordered[-1]]}"
    return ",".join(DAYS[d] for d in ordered)
