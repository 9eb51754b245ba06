"""Figures over time for ``/api/stats`` and ``/api/queues``, from the per-minute aggregates of
the last hour (conveyor/backends/tally.py): throughput per minute, run times and queue waits by
task (average and p95, the p95 interpolated within the fixed histogram buckets as Prometheus'
histogram_quantile does), retry rates. Pure functions of the rows the backend returned."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from conveyor.backends.tally import Tally, combine, minute_of, quantile

#: Minutes in the throughput series.
MINUTES = 60


def throughput(minutes: Iterable[Tally], now: float) -> list[dict[str, Any]]:
    """One entry per minute of the last hour, oldest first, zeros included; the last is the
    current minute, still filling."""
    current = minute_of(now)
    first = current - (MINUTES - 1) * 60
    summed = {t.minute: t for t in _per_minute(minutes) if t.minute is not None}
    return [_minute(summed.get(m), m) for m in range(first, current + 60, 60)]


def _per_minute(minutes: Iterable[Tally]) -> list[Tally]:
    """Every queue and task of each minute summed into one row."""
    merged: dict[int, Tally] = {}
    for row in minutes:
        if row.minute is None:
            continue
        merged.setdefault(row.minute, Tally("", "", row.minute)).merge(row)
    return list(merged.values())


def _minute(row: Tally | None, minute: int) -> dict[str, Any]:
    row = row or Tally("", "", minute)
    return {
        "minute": minute,
        "enqueued": row.enqueued,
        "succeeded": row.succeeded,
        "failed": row.failed,
        "retried": row.retried,
        "dead": row.dead,
        "cancelled": row.cancelled,
        "rescued": row.rescued,
    }


def retry_rate(row: Tally) -> float | None:
    """Runs that failed and will be tried again, out of the runs that ended; None without."""
    runs = row.succeeded + row.retried + row.dead + row.cancelled
    return None if runs == 0 else row.retried / runs


def durations(count: int, total: float, le: Sequence[int]) -> dict[str, Any]:
    return {
        "count": count,
        "avg": None if count == 0 else total / count,
        "p95": quantile(le, count, 0.95),
    }


def by_task(minutes: Iterable[Tally]) -> dict[str, dict[str, Any]]:
    """Per task (all queues), over the minutes given."""
    tasks: dict[str, Tally] = {}
    for row in combine(minutes, by_minute=False):
        tasks.setdefault(row.task, Tally("", row.task)).merge(row)
    return {
        task: {
            "enqueued": row.enqueued,
            "succeeded": row.succeeded,
            "retried": row.retried,
            "dead": row.dead,
            "cancelled": row.cancelled,
            "rescued": row.rescued,
            "retry_rate": retry_rate(row),
            "run_time": durations(row.run_count, row.run_sum, row.run_le),
            "queue_wait": durations(row.wait_count, row.wait_sum, row.wait_le),
        }
        for task, row in sorted(tasks.items())
    }


def overall(minutes: Iterable[Tally]) -> Tally:
    total = Tally("", "")
    for row in minutes:
        total.merge(row)
    return total


def per_queue(minutes: Iterable[Tally]) -> dict[str, Tally]:
    queues: dict[str, Tally] = {}
    for row in minutes:
        queues.setdefault(row.queue, Tally(row.queue, "")).merge(row)
    return queues
