"""The per-minute aggregates of the PostgreSQL engine (conveyor/backends/tally.py) and the cheap
reads of job counts on a big table. A batch of successes tallies in its own statement
(queries.sql, finish_succeeded); the rest is here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.backends.base import JobCounts, Outcome, OutcomeKind
from conveyor.backends.postgres.connection import Cursor
from conveyor.backends.sql import load_queries
from conveyor.backends.tally import (
    CANCELLED,
    COUNTERS,
    DEAD,
    RESCUE_OUTCOMES,
    RETRIED,
    Tally,
    minute_of,
)
from conveyor.job import JobState

QS = load_queries("conveyor.backends.postgres", "stats.sql")

_ENDS = {OutcomeKind.RETRY: RETRIED, OutcomeKind.DEAD: DEAD, OutcomeKind.CANCELLED: CANCELLED}


def tally_ends(cur: Cursor, outcomes: Sequence[Outcome], now: float | None) -> None:
    """Tally the retries, deaths and cancels of a batch (in their final kinds, after retry
    budgets), locking their runs until the statements that end them."""
    ends = [o for o in outcomes if o.kind in _ENDS]
    if not ends:
        return
    params = {
        "now": now,
        "ids": [o.job_id for o in ends],
        "tokens": [o.token for o in ends],
        "outcomes": [_ENDS[o.kind] for o in ends],
    }
    cur.execute(QS["tally_ends"], params)


def tally_rescued(cur: Cursor, rows: Sequence[Sequence[Any]], now: float | None) -> None:
    """Tally the runs a rescue took back: rows of (id, state, ...)."""
    if rows:
        params = {
            "now": now,
            "ids": [int(row[0]) for row in rows],
            "outcomes": [RESCUE_OUTCOMES[row[1]] for row in rows],
        }
        cur.execute(QS["tally_rescued"], params)


def from_row(row: Sequence[Any], minute: int | None) -> Tally:
    """queue, task, the six counters, run_count, run_sum, run_le, wait_count, wait_sum,
    wait_le."""
    queue, task, *counters = row[:8]
    run_count, run_sum, run_le, wait_count, wait_sum, wait_le = row[8:]
    return Tally(
        queue,
        task,
        minute,
        **{name: int(c) for name, c in zip(COUNTERS, counters, strict=True)},
        run_count=int(run_count),
        run_sum=float(run_sum),
        run_le=[int(v) for v in run_le],
        wait_count=int(wait_count),
        wait_sum=float(wait_sum),
        wait_le=[int(v) for v in wait_le],
    )


def minute_stats(cur: Cursor, since: float) -> list[Tally]:
    rows = cur.execute(QS["minute_stats"], {"since": minute_of(since)}).fetchall()
    return [from_row(row[1:], int(row[0])) for row in rows]


def count_enqueued(cur: Cursor, now: float | None, settle: float, batch: int) -> int:
    mark = _mark(cur, "enqueued")
    params = {"now": now, "mark": mark, "settle": float(settle), "batch": batch}
    row = cur.execute(QS["count_enqueued"], params).fetchone()
    assert row is not None  # a SELECT of one row
    upto, counted = row
    if int(upto) != mark:
        cur.execute(QS["set_stats_mark"], {"name": "enqueued", "value": int(upto)})
    return int(counted)


def fold(cur: Cursor, now: float, margin: float) -> int:
    start = _mark(cur, "folded")
    upto = minute_of(now - margin)
    if upto <= start:
        return 0
    folded = cur.execute(QS["fold_minutes"], {"from": start, "upto": upto}).rowcount
    cur.execute(QS["set_stats_mark"], {"name": "folded", "value": upto})
    return max(0, folded)


def _mark(cur: Cursor, name: str) -> int:
    row = cur.execute(QS["lock_stats_mark"], {"name": name}).fetchone()
    assert row is not None  # migration 12 wrote every mark
    return int(row[0])


def job_counts(cur: Cursor, exact_below: int) -> JobCounts | None:
    """Counts each (queue, state) but succeeded up to ``exact_below`` through indexes keyed by
    queue; estimates those at the cap, and the succeeded jobs, from the planner's statistics.
    None when the table is small enough to count (the caller counts exactly)."""
    size_row = cur.execute(QS["table_size"]).fetchone()
    if size_row is None or size_row[0] is None or float(size_row[0]) < exact_below:
        return None
    size = float(size_row[0])
    counted: dict[tuple[str, str], int] = {}
    for queue, state, count in cur.execute(QS["capped_counts"], {"cap": exact_below}):
        counted[(queue, state)] = counted.get((queue, state), 0) + int(count)
    shares = _frequencies(cur.execute(QS["queue_state_frequencies"]).fetchone())
    jobs: dict[str, dict[JobState, int]] = {}
    estimated: set[tuple[str, JobState]] = set()

    def estimate(queue: str, state: str, floor: int) -> None:
        share = shares.get((queue, state))
        # Never below what was counted: the statistics may predate the backlog.
        number = max(floor, round(share * size) if share is not None else 0)
        if number:
            jobs.setdefault(queue, {})[JobState(state)] = number
            estimated.add((queue, JobState(state)))

    for (queue, state), count in counted.items():
        if count >= exact_below:
            estimate(queue, state, count)
        else:
            jobs.setdefault(queue, {})[JobState(state)] = count
    for queue, state in shares:
        if state == JobState.SUCCEEDED.value:
            estimate(queue, state, 0)
    return JobCounts(jobs, frozenset(estimated))


def _frequencies(row: Sequence[Any] | None) -> Mapping[tuple[str, str], float]:
    """(queue, state) -> share of the table, from pg_stats_ext's multivariate MCV list."""
    if row is None or row[0] is None:
        return {}
    values, freqs = row
    pairs = values if values and isinstance(values[0], list) else _pairs(values)
    return {(str(q), str(s)): float(f) for (q, s), f in zip(pairs, freqs, strict=False)}


def _pairs(flat: Sequence[Any]) -> list[list[Any]]:
    return [list(flat[i : i + 2]) for i in range(0, len(flat), 2)]
