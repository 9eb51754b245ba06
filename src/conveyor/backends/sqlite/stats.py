"""The per-minute aggregates of the SQLite engine (conveyor/backends/tally.py): tallied in the
writer's open transaction, which no other writer shares, so what a read before the finish
statements sees is what they change."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.sql import load_queries
from conveyor.backends.tally import (
    BOUNDS,
    CANCELLED,
    COUNTERS,
    DEAD,
    RESCUE_OUTCOMES,
    RETRIED,
    SUCCEEDED,
    Tally,
    minute_of,
)
from conveyor.job import JobState

QS = load_queries("conveyor.backends.sqlite", "stats.sql")

#: What an applied finish's final state says of its run (a retry over its budget ends dead).
_ENDS = {
    JobState.SUCCEEDED: SUCCEEDED,
    JobState.RETRYING: RETRIED,
    JobState.DEAD: DEAD,
    JobState.CANCELLED: CANCELLED,
}
_RUNS = [f"r{i}" for i in range(len(BOUNDS))]
_WAITS = [f"w{i}" for i in range(len(BOUNDS))]

Run = tuple[int, str]


def waits_of_retries(db: sqlite3.Connection, outcomes: Iterable[Outcome]) -> dict[int, float]:
    """The queue waits of the runs a batch will retry, read before it moves their run_at."""
    ids = [o.job_id for o in outcomes if o.kind is OutcomeKind.RETRY]
    if not ids:
        return {}
    rows = db.execute(QS["waits_of_retries"], {"ids": json.dumps(ids)})
    return {int(job_id): float(wait) for job_id, wait in rows}


def tally_finished(
    db: sqlite3.Connection,
    waits: Mapping[int, float],
    ended: Mapping[Run, JobState],
    outcomes: Sequence[Outcome],
    now: float,
) -> None:
    """Add the runs the batch ended (``ended``, by run) to the minute of ``now``; a release
    is not a run that ended."""
    released = {(o.job_id, o.token) for o in outcomes if o.kind is OutcomeKind.RELEASED}
    by_outcome: dict[str, list[int]] = {}
    for run, state in ended.items():
        if run not in released:
            by_outcome.setdefault(_ENDS[state], []).append(run[0])
    tallies: dict[tuple[str, str], Tally] = {}
    minute = minute_of(now)
    for outcome, ids in by_outcome.items():
        retried = [waits.get(i) for i in ids] if outcome == RETRIED else None
        params = {
            "ids": json.dumps(ids),
            "waits": None if retried is None else json.dumps(retried),
            "now": now,
        }
        for queue, task, run_bucket, wait_bucket, count, run_sum, wait_sum in db.execute(
            QS["runs_ended"], params
        ):
            tally = tallies.setdefault((queue, task), Tally(queue, task, minute))
            tally.add_runs(outcome, count, run_bucket, run_sum, wait_bucket, wait_sum)
    add(db, tallies.values())


def tally_rescued(db: sqlite3.Connection, rows: Sequence[Sequence[Any]], now: float) -> None:
    """Add the runs a rescue took back (rows of (id, state, ...)) to the minute of ``now``."""
    if not rows:
        return
    states = {int(row[0]): str(row[1]) for row in rows}
    tallies: dict[tuple[str, str], Tally] = {}
    for job_id, queue, task in db.execute(QS["tasks_of"], {"ids": json.dumps(list(states))}):
        tally = tallies.setdefault((queue, task), Tally(queue, task, minute_of(now)))
        tally.add_run(RESCUE_OUTCOMES[states[int(job_id)]], None, None)
    add(db, tallies.values())


def add(db: sqlite3.Connection, tallies: Iterable[Tally]) -> None:
    db.executemany(QS["tally_add"], [_params(t) for t in tallies])


def _params(tally: Tally) -> dict[str, Any]:
    params: dict[str, Any] = {name: getattr(tally, name) for name in COUNTERS}
    params.update(
        minute=tally.minute,
        queue=tally.queue,
        task=tally.task,
        run_count=tally.run_count,
        run_sum=tally.run_sum,
        wait_count=tally.wait_count,
        wait_sum=tally.wait_sum,
    )
    params.update(zip(_RUNS, tally.run_le, strict=True))
    params.update(zip(_WAITS, tally.wait_le, strict=True))
    return params


def from_row(row: Sequence[Any], minute: int | None) -> Tally:
    """A row of counts: queue, task, the counters, run_count, run_sum, r0.., wait_count,
    wait_sum, w0.. (the order of migration 12's columns)."""
    queue, task, *rest = row
    n = len(BOUNDS)
    counters = [int(v) for v in rest[: len(COUNTERS)]]
    run = rest[len(COUNTERS) :]
    wait = rest[len(COUNTERS) + 2 + n :]
    return Tally(
        queue,
        task,
        minute,
        **dict(zip(COUNTERS, counters, strict=True)),
        run_count=int(run[0]),
        run_sum=float(run[1]),
        run_le=[int(v) for v in run[2 : 2 + n]],
        wait_count=int(wait[0]),
        wait_sum=float(wait[1]),
        wait_le=[int(v) for v in wait[2 : 2 + n]],
    )


def count_enqueued(db: sqlite3.Connection, now: float, settle: float, batch: int) -> int:
    """Tally the jobs enqueued past the watermark and settled; move the watermark."""
    mark = int(db.execute(QS["stats_mark"], {"name": "enqueued"}).fetchone()[0])
    first = db.execute(
        QS["first_unsettled_job"], {"mark": mark, "cutoff": now - settle}
    ).fetchone()[0]
    upto = int(first) - 1 if first is not None else int(db.execute(QS["last_job"]).fetchone()[0])
    upto = min(upto, mark + batch)
    if upto <= mark:
        return 0
    counted = 0
    tallies = []
    for minute, queue, task, count in db.execute(QS["new_jobs"], {"mark": mark, "upto": upto}):
        tallies.append(Tally(queue, task, int(minute), enqueued=int(count)))
        counted += int(count)
    add(db, tallies)
    db.execute(QS["set_stats_mark"], {"name": "enqueued", "value": upto})
    return counted


def fold(db: sqlite3.Connection, now: float, margin: float) -> int:
    """Fold the closed minutes not folded yet into the totals; returns the totals added to."""
    start = int(db.execute(QS["stats_mark"], {"name": "folded"}).fetchone()[0])
    upto = minute_of(now - margin)
    if upto <= start:
        return 0
    folded = db.execute(QS["fold_minutes"], {"from": start, "upto": upto}).rowcount
    db.execute(QS["set_stats_mark"], {"name": "folded", "value": upto})
    return max(0, folded)
