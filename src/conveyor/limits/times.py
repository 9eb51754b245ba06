"""Moments given by people: the end of a pause as a datetime, UNIX seconds, or in the CLI an
ISO 8601 time or a duration from now."""

from __future__ import annotations

import datetime as dt
import math
import re

from conveyor.errors import ConfigurationError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def moment(value: dt.datetime | float | int | None) -> float | None:
    """UNIX seconds from an aware datetime or a number; None stays None."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise ConfigurationError(
                f"give a time with its time zone (an aware datetime), got {value.isoformat()}"
            )
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError(f"a time is an aware datetime or UNIX seconds, got {value!r}")
    return float(value)


def parse_moment(text: str, now: float) -> float:
    """``30m``, ``2h``, ``1d`` from ``now``; or an ISO 8601 time, in this machine's time zone
    when it names none (``2026-12-02T08:00``, ``2026-12-02 08:00+01:00``)."""
    match = _DURATION.match(text)
    if match is not None:
        return now + float(match.group(1)) * _UNITS[match.group(2)]
    try:
        parsed = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"a time reads like 30m, 2h, 1d (from now) or 2026-12-02T08:00[+01:00], got {text!r}"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()
    return parsed.timestamp()


def show(at: float) -> str:
    """A moment for people: UTC, to the second."""
    if math.isinf(at):
        return "resumed"
    text = dt.datetime.fromtimestamp(at, dt.UTC).isoformat(sep=" ", timespec="milliseconds")
    return text.replace("+00:00", " UTC")
