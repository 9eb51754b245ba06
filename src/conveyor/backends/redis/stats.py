"""The per-minute aggregates of the Redis engine (conveyor/backends/tally.py): what the
scripts stats_*.lua return, as Tally records. finish.lua, rescue.lua and reap.lua tally the
runs they end in the same script call (lua/tally.lua describes the keys and fields)."""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.backends.tally import BOUNDS, COUNTERS, Tally, combine

#: Buckets of run times and queue waits per field, past the last bound included.
_BUCKETS = len(BOUNDS) + 1


def _tally(queue: str, task: str, minute: int | None, counts: dict[str, str]) -> Tally:
    runs = [int(counts.get(f"r{i}", 0)) for i in range(_BUCKETS)]
    waits = [int(counts.get(f"w{i}", 0)) for i in range(_BUCKETS)]
    tally = Tally(
        queue,
        task,
        minute,
        run_count=sum(runs),
        run_sum=float(counts.get("run_sum", 0.0)),
        run_le=_cumulative(runs),
        wait_count=sum(waits),
        wait_sum=float(counts.get("wait_sum", 0.0)),
        wait_le=_cumulative(waits),
    )
    for name in COUNTERS:
        setattr(tally, name, int(counts.get(name, 0)))
    return tally


def _cumulative(buckets: list[int]) -> list[int]:
    out, total = [], 0
    for count in buckets[: len(BOUNDS)]:
        total += count
        out.append(total)
    return out


def tallies(flat: Sequence[str], minute: int | None) -> list[Tally]:
    """A hash of "<queue>\\x1f<task>\\x1f<counter>" fields, flat as HGETALL returns it."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for field, value in zip(flat[::2], flat[1::2], strict=True):
        queue, task, counter = field.split("\x1f")
        rows.setdefault((queue, task), {})[counter] = value
    return [_tally(queue, task, minute, counts) for (queue, task), counts in rows.items()]


def minute_rows(reply: Sequence[Sequence[str]]) -> list[Tally]:
    """stats_minutes.lua's reply: per minute, its start then its hash."""
    rows = [t for minute, *flat in reply for t in tallies(flat, int(minute))]
    return combine(rows, by_minute=True)


def total_rows(reply: Sequence[Sequence[str]]) -> list[Tally]:
    """stats_totals.lua's reply: the totals' hash, then the unfolded minutes', summed."""
    return combine((t for flat in reply for t in tallies(flat, None)), by_minute=False)
