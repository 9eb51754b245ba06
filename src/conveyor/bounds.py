"""The ranges of every number and string a user hands Conveyor, checked once, here.

The Python API (task options, ``enqueue_many``, ``app.enqueue``, the job and queue operations)
and the CLI call the same functions, so a value is refused identically from both, before
anything is written, and identically on every engine: each range fits what every schema stores
(PostgreSQL ``integer`` and ``bigint``, ``timestamptz``, its B-tree row size), and what Python
can turn back into a date. A refused value raises ``ConfigurationError`` naming the option.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from conveyor.errors import ConfigurationError, JobNotFound

#: Job ids are 64-bit integers on every engine (PostgreSQL ``bigint``, SQLite ``INTEGER``).
MAX_JOB_ID = 2**63 - 1
#: Attempts a job may have: far more than any retry policy needs, and room to requeue it from
#: the dead-letter queue (which adds one) without leaving a 32-bit integer.
MAX_ATTEMPTS = 1_000_000
#: Priorities are 32-bit integers (PostgreSQL ``integer``).
MIN_PRIORITY = -(2**31)
MAX_PRIORITY = 2**31 - 1
#: The largest cap on the running jobs of a queue (a 32-bit integer).
MAX_CAP = 2**31 - 1
#: ``run_at`` lies between the UNIX epoch and the end of year 9999 (UTC): later than that,
#: neither Python's datetime nor most tools can show the job.
MIN_RUN_AT = 0.0
#: The first moment of year 10,000 (excluded).
MAX_RUN_AT = datetime(9999, 12, 31, tzinfo=UTC).timestamp() + 86400
#: ``delay``: at most 100 years (a delay from now must stay a showable date).
MAX_DELAY = 100 * 365.25 * 86400
#: ``timeout``: at most 30 days (asyncio and thread waits refuse far larger numbers).
MAX_TIMEOUT = 30 * 86400.0
#: Rows a read (``jobs list --limit``) may ask for.
MAX_LIMIT = 2**63 - 1
#: Characters of names and keys. An idempotency key is a key of a unique index: PostgreSQL
#: refuses index rows over ~2,700 bytes, and a character takes up to 4 bytes in UTF-8.
MAX_TASK_NAME = 500
MAX_QUEUE_NAME = 200
MAX_IDEMPOTENCY_KEY = 500
MAX_WORKER_ID = 500
#: Jobs a worker runs at once (per pool) and claims ahead of a free slot.
MAX_CONCURRENCY = 10_000
MAX_PREFETCH = 100_000
#: Jobs waiting in a limited queue (``queue_limits``), and jobs claimed in one statement.
MAX_QUEUE_LIMIT = 2**31 - 1
MAX_BATCH = 100_000
#: Worker processes one ``conveyor worker --processes`` supervises.
MAX_PROCESSES = 1_000


def whole_number(name: str, value: Any, low: int, high: int) -> int:
    """``value`` if it is an integer (not a bool) from ``low`` to ``high``."""
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    raise ConfigurationError(
        f"{name} must be a whole number from {low:,} to {high:,}, got {_shown(value)}"
    )


def text(name: str, value: Any, max_length: int) -> str:
    """``value`` if it is a string of 1 to ``max_length`` characters that every engine stores
    as given: no NUL (PostgreSQL refuses it), no lone surrogate (not valid Unicode)."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_length:
        shown = f"{len(value):,} characters" if isinstance(value, str) and value else _shown(value)
        raise ConfigurationError(f"{name} must be 1-{max_length} characters, got {shown}")
    if "\x00" in value:
        raise ConfigurationError(f"{name} must not contain a NUL character, got {_shown(value)}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError(
                f"{name} contains a lone surrogate, which is not valid Unicode: {_shown(value)}"
            ) from None
    return value


def _shown(value: object) -> str:
    """``repr(value)``, shortened: an error message stays one readable line."""
    try:
        text = repr(value)
    except ValueError:  # an integer of more digits than Python turns into text
        return f"an integer of {value.bit_length() if isinstance(value, int) else '?'} bits"
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text):,} characters)"


def task_name(value: Any) -> str:
    return text("task name", value, MAX_TASK_NAME)


def queue_name(value: Any) -> str:
    return text("queue name", value, MAX_QUEUE_NAME)


def idempotency_key(value: Any) -> str:
    return text("idempotency_key", value, MAX_IDEMPOTENCY_KEY)


def worker_id(value: Any) -> str:
    return text("worker id", value, MAX_WORKER_ID)


def max_attempts(value: Any) -> int:
    return whole_number("max_attempts", value, 1, MAX_ATTEMPTS)


def priority(value: Any) -> int:
    return whole_number("priority", value, MIN_PRIORITY, MAX_PRIORITY)


def limit(value: Any) -> int:
    return whole_number("limit", value, 1, MAX_LIMIT)


def seconds(name: str, value: Any, maximum: float, *, positive: bool = False) -> float:
    """A duration in seconds (a number or a ``timedelta``): finite, >= 0 (or > 0), at most
    ``maximum``."""
    if isinstance(value, bool):
        raise ConfigurationError(f"{name} must be a number of seconds, got {_shown(value)}")
    total = getattr(value, "total_seconds", None)
    try:
        number = float(total() if callable(total) else value)
    except OverflowError:  # an integer beyond any float
        number = math.inf
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"{name} must be a number of seconds, got {_shown(value)}"
        ) from None
    low_ok = number > 0 if positive else number >= 0
    if not (math.isfinite(number) and low_ok and number <= maximum):
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(
            f"{name} must be a finite number of seconds {bound} and at most {maximum:,.0f}, "
            f"got {number:g}"
        )
    return number


def timestamp(name: str, value: Any) -> float:
    """A moment as UNIX seconds (a number or a timezone-aware datetime) from 1970 to the end
    of year 9999."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigurationError(f"{name} must be timezone-aware (e.g. datetime.now(UTC))")
        try:
            number = value.timestamp()
        except (OverflowError, ValueError):  # year 1 or 9999 shifted past the edge by its offset
            number = math.inf
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    else:
        raise ConfigurationError(
            f"{name} must be a UNIX timestamp or a timezone-aware datetime, got {_shown(value)}"
        )
    if not (math.isfinite(number) and MIN_RUN_AT <= number < MAX_RUN_AT):
        shown = value.isoformat() if isinstance(value, datetime) else _shown(value)
        raise ConfigurationError(
            f"{name} must be between 1970-01-01 and 9999-12-31 (UTC), got {shown}"
        )
    return number


def job_id(value: Any) -> int:
    """A job id: an integer; one outside the range any engine stores names no job."""
    if isinstance(value, int) and not isinstance(value, bool):
        if 1 <= value <= MAX_JOB_ID:
            return value
        if value.bit_length() <= 256:
            raise JobNotFound(value)
    raise ConfigurationError(
        f"a job id must be an integer from 1 to {MAX_JOB_ID:,}, got {_shown(value)}"
    )


def job_ids(values: Sequence[Any]) -> list[int]:
    if isinstance(values, str | bytes):
        raise ConfigurationError(f"job ids must be a list of integers, got {values!r}")
    return [job_id(value) for value in values]


def before_id(value: Any) -> int:
    return whole_number("before_id", value, 1, MAX_JOB_ID)


__all__ = [
    "MAX_ATTEMPTS",
    "MAX_CAP",
    "MAX_DELAY",
    "MAX_IDEMPOTENCY_KEY",
    "MAX_JOB_ID",
    "MAX_PRIORITY",
    "MAX_QUEUE_NAME",
    "MAX_RUN_AT",
    "MAX_TASK_NAME",
    "MAX_TIMEOUT",
    "MIN_PRIORITY",
    "MIN_RUN_AT",
]
