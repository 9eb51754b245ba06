"""Rate limits: at most ``count`` job starts in any window of ``per`` seconds, fleet-wide.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket of depth one): a limited
queue keeps one time, ``rate_next``, the earliest moment its next start may happen. A claim may
start a job of the queue when ``rate_next`` has come, and moves it to
``max(rate_next, now) + per / count``. Starts are therefore at least ``per / count`` seconds
apart, so no window of ``per`` seconds -- wherever it begins -- holds more than ``count`` of
them: there is no burst at a window's edge (the double burst of fixed windows), and none after
an idle spell either (time not used is not saved up). The price is smoothness: a queue limited
to 100/m starts one job every 0.6 s rather than 100 at once. The state is one time per queue,
updated in the claim's transaction under the queue's row lock (PostgreSQL) or the write lock
(SQLite), so claims of many workers on many hosts take their turns and never overshoot.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from conveyor.errors import ConfigurationError

#: A rate no finer than this: starts further apart than a day are a schedule, not a limit.
MAX_PER = 86400.0
MAX_COUNT = 1_000_000

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([smhd])\s*$")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` starts per ``per`` seconds: ``RateLimit(100, per=60)`` is ``"100/m"``."""

    count: int
    per: float = 1.0

    def __post_init__(self) -> None:
        count, per = self.count, self.per
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise ConfigurationError(
                f"a rate limit's count must be a whole number from 1 to {MAX_COUNT}, got {count!r}"
            )
        if (
            isinstance(per, bool)
            or not isinstance(per, int | float)
            or not math.isfinite(per)
            or not 0 < per <= MAX_PER
        ):
            raise ConfigurationError(
                f"a rate limit's period must be more than 0 and at most {MAX_PER:g} seconds, "
                f"got {per!r}"
            )

    @property
    def interval(self) -> float:
        """Seconds between two starts."""
        return self.per / self.count

    def describe(self) -> str:
        for unit, seconds in _UNITS.items():
            if self.per == seconds:
                return f"{self.count}/{unit}"
        return f"{self.count}/{self.per:g}s"

    def next_after(self, rate_next: float | None, now: float, starts: int) -> float:
        """``rate_next`` once ``starts`` more jobs started at ``now``, rounded up to a whole
        microsecond, the precision PostgreSQL keeps times in: starts come at least the
        interval apart, to the microsecond."""
        value = max(rate_next if rate_next is not None else now, now) + starts * self.interval
        return math.ceil(value * 1e6) / 1e6

    @staticmethod
    def allows(rate_next: float | None, now: float) -> bool:
        """Whether a start may happen at ``now``."""
        return rate_next is None or rate_next <= now


def parse_rate(value: RateLimit | str) -> RateLimit:
    """``"100/m"``, ``"5/s"``, ``"1000/h"``, ``"10/d"``, ``"3/10s"``, or a RateLimit."""
    if isinstance(value, RateLimit):
        return value
    if not isinstance(value, str):
        raise ConfigurationError(
            f"a rate limit is a string such as '100/m' or a RateLimit, got {value!r}"
        )
    match = _SPEC.match(value)
    if match is None:
        raise ConfigurationError(
            f"a rate limit reads COUNT/UNIT, such as '100/m', '5/s', '1000/h' or '3/10s' "
            f"(units s, m, h, d), got {value!r}"
        )
    count, multiple, unit = match.groups()
    per = (float(multiple) if multiple else 1.0) * _UNITS[unit]
    return RateLimit(int(count), per=per)
