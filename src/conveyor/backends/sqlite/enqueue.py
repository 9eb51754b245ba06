"""enqueue_many on SQLite, inside the backend's write transaction.

- Jobs without idempotency keys go in by multi-row INSERTs of up to ``_CHUNK`` rows. Binding
  ten parameters per row cost a third of such an insert (each value converted and copied one
  by one), so a column holding the same value in every row of a chunk is bound once, as a
  numbered parameter that every row names, and only the columns that differ are bound row by
  row. A batch of one task's jobs, whose queue, task and options agree, binds its arguments
  alone; jobs that take no arguments bind nothing per row.
- A single job without a key, in a queue without a limit, is one INSERT ... RETURNING that
  commits on its own (``insert_single``): a third of the statements of a transaction around it.
- A keyed job first looks for a job holding its key, and is inserted on its own if none does.
- Queue limits are counted after inserting, in the same transaction: a job that an idempotency
  key resolved to an existing one takes no room, and raising rolls the batch back.
- Results carry the time the rows were written with, so that the app's snapshots of the new
  jobs match them exactly.
"""

from __future__ import annotations

import functools
import json
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
from conveyor.limits.buckets import new_buckets

#: Jobs per INSERT: at most 9 parameters each, far under SQLite's 32,766-parameter limit.
_CHUNK = 500
_QUEUED, _SCHEDULED = JobState.QUEUED, JobState.SCHEDULED
_INSERT_PLAIN = Q["insert_plain_job"]
#: JobState.value, without the enum's property lookup on the single enqueue's path.
_STATE_TEXT = {_QUEUED: _QUEUED.value, _SCHEDULED: _SCHEDULED.value}
#: Readers of the job fields that insert_jobs_head takes after created_at, in its column order
#: (state and run_at are worked out from the clock).
_QUEUE = attrgetter("queue")
_TASK = attrgetter("task")
_ARGS = attrgetter("args_json")
_KWARGS = attrgetter("kwargs_json")
_PRIORITY = attrgetter("priority")
_MAX_ATTEMPTS = attrgetter("max_attempts")
_TIMEOUT = attrgetter("timeout")
_RUN_AT = attrgetter("run_at")
_DELAY = attrgetter("delay")
_KEY = attrgetter("idempotency_key")
_RATE_KEY = attrgetter("rate_key")


def insert_jobs(
    db: sqlite3.Connection, jobs: Sequence[NewJob], now: float, limits: Mapping[str, int]
) -> list[EnqueueResult]:
    """Write ``jobs`` (due ``now`` unless they say otherwise); results in their order."""
    results: list[EnqueueResult] = []
    plain_from = 0
    keys = list(map(_KEY, jobs))
    if keys.count(None) != len(keys):
        for index, job in enumerate(jobs):
            if job.idempotency_key is not None:
                results += _insert_plain(db, jobs[plain_from:index], now)
                results.append(_insert_keyed(db, job, job.idempotency_key, now))
                plain_from = index + 1
    results += _insert_plain(db, jobs[plain_from:], now)
    if list(map(_RATE_KEY, jobs)).count(None) != len(jobs):
        mark_rate_limited(db, jobs, results)
    if limits:
        _check_queue_limits(db, jobs, results, limits)
    return results


def mark_rate_limited(
    db: sqlite3.Connection, jobs: Sequence[NewJob], results: Sequence[EnqueueResult]
) -> None:
    """The jobs of rate-limited tasks take their bucket's key, and their buckets exist, before
    the transaction that wrote them commits (see conveyor/limits/buckets.py)."""
    made = [job for job, result in zip(jobs, results, strict=True) if result.created]
    for (task, key), rate in new_buckets(made).items():
        params = {"task": task, "key": key, "count": rate.count, "per": rate.per}
        db.execute(Q["upsert_rate_bucket"], params)
    by_key: dict[str, list[int]] = {}
    for job, result in zip(jobs, results, strict=True):
        if result.created and job.rate_key is not None:
            by_key.setdefault(job.rate_key, []).append(result.job_id)
    for key, ids in by_key.items():
        db.execute(Q["mark_rate_key"], {"key": key, "ids": json.dumps(ids)})


def _insert_plain(
    db: sqlite3.Connection, jobs: Sequence[NewJob], now: float
) -> list[EnqueueResult]:
    results: list[EnqueueResult] = []
    for start in range(0, len(jobs), _CHUNK):
        chunk = jobs[start : start + _CHUNK]
        run_at, states, state_texts = _due(chunk, now)
        columns = [
            list(map(_QUEUE, chunk)),
            list(map(_TASK, chunk)),
            list(map(_ARGS, chunk)),
            list(map(_KWARGS, chunk)),
            state_texts,
            list(map(_PRIORITY, chunk)),
            run_at,
            list(map(_MAX_ATTEMPTS, chunk)),
            list(map(_TIMEOUT, chunk)),
        ]
        # Equal values are bound once. Equal means == (1 == 1.0): the column's type affinity
        # stores such values alike.
        uniform = tuple(column.count(column[0]) == len(column) for column in columns)
        params: list[Any] = [
            column[0] for column, same in zip(columns, uniform, strict=True) if same
        ]
        params.append(now)
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
            states,
            repeat(True),
            repeat(None),
            repeat(now),
        )
    return results


def _due(chunk: Sequence[NewJob], now: float) -> tuple[list[float], list[JobState], list[str]]:
    """When each job is due, and so its state, also as the text stored."""
    run_at = list(map(_RUN_AT, chunk))
    delays = list(map(_DELAY, chunk))
    size = len(chunk)
    if run_at.count(None) == size and delays.count(delays[0]) == size:
        # The usual bulk batch: jobs due after the same delay, worked out once.
        due = now + delays[0]
        state = _SCHEDULED if due > now else _QUEUED
        return [due] * size, [state] * size, [state.value] * size
    due_at = [now + delay if at is None else at for at, delay in zip(run_at, delays, strict=True)]
    states = [_SCHEDULED if due > now else _QUEUED for due in due_at]
    return due_at, states, [state.value for state in states]


@functools.lru_cache(maxsize=32)
def _insert_statement(uniform: tuple[bool, ...], rows: int) -> str:
    """insert_jobs_head with ``rows`` rows of placeholders. The uniform columns are the
    numbered parameters ?1, ?2 ... and created_at the one after them; each row names it first,
    so that the plain "?" of the other columns (which SQLite numbers on from the largest
    number seen) take the values that follow, row after row. Numbering every value instead
    makes the statement take ten times as long to compile."""
    shared = iter(range(1, 1 + sum(uniform)))
    row = ", ".join(
        [f"?{1 + sum(uniform)}"] + [f"?{next(shared)}" if same else "?" for same in uniform]
    )
    return Q["insert_jobs_head"] + "\n" + ",\n".join([f"({row})"] * rows)


def insert_single(cursor: sqlite3.Cursor, job: NewJob, now: float) -> EnqueueResult:
    """One job without a key: one statement, run outside any transaction (it is one of its
    own, see Connection.write_one): the usual single enqueue. On the connection's own cursor
    (Connection.cursor), which spares making one per call."""
    run_at = now + job.delay if job.run_at is None else job.run_at
    state = _SCHEDULED if run_at > now else _QUEUED
    cursor.execute(
        _INSERT_PLAIN,
        (
            job.queue,
            job.task,
            job.args_json,
            job.kwargs_json,
            _STATE_TEXT[state],
            job.priority,
            run_at,
            job.max_attempts,
            job.timeout,
            now,
        ),
    )
    # No rows to step through: execute ran the statement to its end (and so committed it,
    # outside a transaction), and the id is known without a query.
    assert cursor.lastrowid is not None
    return EnqueueResult(cursor.lastrowid, state, True, None, now)


def _insert_keyed(db: sqlite3.Connection, job: NewJob, key: str, now: float) -> EnqueueResult:
    query = "find_idempotent_any" if job.idempotency_scope == "any" else "find_idempotent_live"
    found = db.execute(Q[query], {"key": key}).fetchone()
    if found is not None:
        return EnqueueResult(found[0], JobState(found[1]), False, at=now)
    return _insert_one(db, job, key, now)


def _insert_one(db: sqlite3.Connection, job: NewJob, key: str | None, now: float) -> EnqueueResult:
    run_at = now + job.delay if job.run_at is None else job.run_at
    state = _SCHEDULED if run_at > now else _QUEUED
    cursor = db.execute(
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
    # No rows to step through: execute ran the statement to its end (and so committed it,
    # outside a transaction), and the id is known without a query.
    assert cursor.lastrowid is not None
    return EnqueueResult(cursor.lastrowid, state, True, at=now)


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
