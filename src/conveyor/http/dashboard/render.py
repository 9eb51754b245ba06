"""Templates (Jinja2, every value escaped unless a template says otherwise — none does) and
the filters they use."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from conveyor.job import JobState


def when(timestamp: float | None) -> str:
    """UNIX seconds as a UTC time a person reads ("2026-05-01 12:00:03Z")."""
    if timestamp is None or not math.isfinite(timestamp):
        return "—"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def duration(seconds: float | None) -> str:
    """A span of seconds, shortly ("4s", "3m 20s", "2h 5m", "3d 4h")."""
    if seconds is None:
        return "—"
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def finite(value: Any) -> bool:
    """A time that will come (a pause until resumed ends at infinity)."""
    return isinstance(value, int | float) and math.isfinite(value)


def pretty(value: Any) -> str:
    """A JSON value laid out to read (arguments, results, progress, checkpoints)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=repr)


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("conveyor.http.dashboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, duration=duration, pretty=pretty)
    env.tests.update(finite=finite)
    env.globals.update(states=list(JobState))
    return env
