"""enqueue_many on SQLite, inside the backend's write transaction.

- Jobs without idempotency keys go in by multi-row INSERTs of up to ``_CHUNK`` rows. Binding
  parameters is the larger part of what sqlite3 spends on such an insert (each value converted
  and copied one by one), so a column holding the same value in every row of a chunk is bound
  once, as a numbered parameter that every row names, and only the columns that differ are
  bound row by row. A batch of one task's jobs, whose queue, task and options agree, binds its
  arguments alone; jobs that take no arguments bind nothing per row.
- A keyed job first looks for a job holding its key, and is inserted on its own if none does.
- Queue limits are counted after inserting, in the same transaction: a job that an idempotency
  key resolved to an existing one takes no room, and raising rolls the batch back.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from operator import attrgetter
from typing import Any

from conveyor.backends.base import EnqueueResult, NewJob
from conveyor.backends.sqlite.connection import Q
from conveyor.errors import QueueFull
from conveyor.job import JobState

#: Jobs per INSERT: at most 9 parameters each, far under SQLite's 32,766-parameter limit.
_CHUNK = 500
_STATES = {state.value: state for state in JobState}
#: Readers of the job fields that insert_jobs_head takes, in its column order (state and run_at
#: are worked out from the clock); created_at follows them.
_QUEUE = attrgetter("queue")
_TASK = attrgetter("task")
_ARGS = attrgetter("args_json")
_KWARGS = attrgetter("kwargs_json")
_PRIORITY = attrgetter("priority")
_MAX_ATTEMPTS = attrgetter("max_attempts")
_TIMEOUT = attrgetter("timeout")


def insert_jobs(
    db: sqlite3.Connection, jobs: Sequence[NewJob], now: float, limits: Mapping[str, int]
) -> list[EnqueueResult]:
    """Write ``jobs`` (due ``now`` unless they say otherwise); results in their order."""
    results: list[EnqueueResult] = []
    plain_from = 0
    for index, job in enumerate(jobs):
        if job.idempotency_key is not None:
            results += _insert_plain(db, jobs[plain_from:index], now)
            results.append(_insert_keyed(db, job, job.idempotency_key, now))
            plain_from = index + 1
    results += _insert_plain(db, jobs[plain_from:], now)
    if limits:
        _check_queue_limits(db, jobs, results, limits)
    return results


def _insert_plain(
    db: sqlite3.Connection, jobs: Sequence[NewJob], now: float
) -> list[EnqueueResult]:
    results: list[EnqueueResult] = []
    for start in range(0, len(jobs), _CHUNK):
        chunk = jobs[start : start + _CHUNK]
        run_at = [now + job.delay if job.run_at is None else job.run_at for job in chunk]
        states = ["scheduled" if due > now else "queued" for due in run_at]
        columns = [
            list(map(_QUEUE, chunk)),
            list(map(_TASK, chunk)),
            list(map(_ARGS, chunk)),
            list(map(_KWARGS, chunk)),
            states,
            list(map(_PRIORITY, chunk)),
            run_at,
            list(map(_MAX_ATTEMPTS, chunk)),
            list(map(_TIMEOUT, chunk)),
        ]
        # Equal values are bound once. Equal means == (1 == 1.0): the column's type affinity
        # stores such values alike.
        uniform = tuple(column.count(column[0]) == len(column) for column in columns)
        params: list[Any] = [now]
        params += (column[0] for column, same in zip(columns, uniform, strict=True) if same)
        varying = [column for column, same in zip(columns, uniform, strict=True) if not same]
        params += (
            chain.from_iterable(zip(*varying, strict=True)) if len(varying) > 1 else chain(*varying)
        )
        db.execute(_insert_statement(uniform, len(chunk)), params)
        # One statement under the write lock: the rows took consecutive ids, in order.
        first = int(db.execute(Q["last_insert_id"]).fetchone()[0]) - len(chunk) + 1
        results += map(
            EnqueueResult,
            range(first, first + len(chunk)),
            map(_STATES.__getitem__, states),
            repeat(True),
        )
    return results


@functools.lru_cache(maxsize=32)
def _insert_statement(uniform: tuple[bool, ...], rows: int) -> str:
    """insert_jobs_head with ``rows`` rows of numbered parameters: ?1 is created_at, then one
    per uniform column; after them, the values of the other columns, row after row."""
    shared = iter(range(2, 2 + sum(uniform)))
    fixed = [f"?{next(shared)}" if same else "" for same in uniform]
    parameter = 1 + sum(uniform)
    values: list[str] = []
    for _ in range(rows):
        row: list[str] = []
        for placeholder in fixed:
            if not placeholder:
                parameter += 1
                placeholder = f"?{parameter}"
            row.append(placeholder)
        values.append(f"({', '.join(row)}, ?1)")
    return Q["insert_jobs_head"] + "\n" + ",\n".join(values)


def _insert_keyed(db: sqlite3.Connection, job: NewJob, key: str, now: float) -> EnqueueResult:
    query = "find_idempotent_any" if job.idempotency_scope == "any" else "find_idempotent_live"
    found = db.execute(Q[query], {"key": key}).fetchone()
    if found is not None:
        return EnqueueResult(found[0], JobState(found[1]), False)
    run_at = now + job.delay if job.run_at is None else job.run_at
    state = JobState.SCHEDULED if run_at > now else JobState.QUEUED
    db.execute(
        Q["insert_job"],
        {
            "queue": job.queue,
            "task": job.task,
            "args": job.args_json,
            "kwargs": job.kwargs_json,
            "state": state.value,
            "priority": job.priority,
            "run_at": run_at,
            "max_attempts": job.max_attempts,
            "timeout": job.timeout,
            "idempotency_key": key,
            "now": now,
        },
    )
    return EnqueueResult(int(db.execute(Q["last_insert_id"]).fetchone()[0]), state, True)


def _check_queue_limits(
    db: sqlite3.Connection,
    jobs: Sequence[NewJob],
    results: Sequence[EnqueueResult],
    limits: Mapping[str, int],
) -> None:
    created = Counter(
        job.queue
        for job, result in zip(jobs, results, strict=True)
        if result.created and job.queue in limits
    )
    for queue, count in created.items():
        depth = int(db.execute(Q["queue_depth"], {"queue": queue}).fetchone()[0])
        if depth > limits[queue]:
            raise QueueFull(queue, depth - count, limits[queue])
