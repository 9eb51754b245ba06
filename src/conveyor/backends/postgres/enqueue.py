"""enqueue_many on PostgreSQL: a whole batch in one INSERT, which also returns the new ids
and sends one NOTIFY per queue. A plain batch is that statement alone (one round trip); keys,
queue limits and staging add statements around it, in one transaction.

- Small batches travel as one array per column (``insert_jobs``); large ones are COPYed into a
  temporary table first (``insert_jobs_staged``): COPY is the cheapest way to move rows into the
  server, and the INSERT ... SELECT that follows can still return the new ids.
- Idempotency keys are settled by the unique partial index itself: the INSERT says
  ``ON CONFLICT ... DO NOTHING``, so concurrent enqueues of one key from any number of processes
  produce exactly one job, and the skipped jobs report the holder of their key.
- Queue limits are checked under a per-queue advisory lock held until commit, so concurrent
  enqueues cannot overshoot a limit between counting and inserting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor.backends.base import EnqueueResult, NewJob
from conveyor.backends.postgres.connection import Cursor, Q
from conveyor.errors import BackendError, QueueFull
from conveyor.job import JobState

#: From this many jobs on, COPY through the staging table; below, the temporary table's own
#: cost (creating and dropping it) outweighs what COPY saves.
STAGE_FROM = 500

_STATES = {state.value: state for state in JobState}
#: Column types of the binary COPY into conveyor_enqueue_stage.
_STAGE_TYPES = ["text"] * 4 + ["int4", "float8", "float8", "int4", "float8", "text"]


def needs_transaction(jobs: Sequence[NewJob], queue_limits: Mapping[str, int]) -> bool:
    """A batch without limits, keys or staging is a single statement, which commits alone."""
    return (
        len(jobs) >= STAGE_FROM
        or any(job.queue in queue_limits for job in jobs)
        or any(job.idempotency_key is not None for job in jobs)
    )


def enqueue_jobs(
    cur: Cursor,
    jobs: Sequence[NewJob],
    now: float | None,
    queue_limits: Mapping[str, int],
    channel: str,
) -> list[EnqueueResult]:
    """The body of enqueue_many; results in the order of ``jobs``. The insert also sends one
    NOTIFY on ``channel`` per queue that got new jobs."""
    _check_queue_limits(cur, jobs, queue_limits)
    if all(job.idempotency_key is None for job in jobs):
        rows = _insert(cur, jobs, now, channel, keyed=False)
        return [EnqueueResult(int(job_id), _STATES[state], True) for job_id, state, _ in rows]
    return _enqueue_keyed(cur, jobs, now, channel)


def _enqueue_keyed(
    cur: Cursor, jobs: Sequence[NewJob], now: float | None, channel: str
) -> list[EnqueueResult]:
    results: list[EnqueueResult | None] = [None] * len(jobs)

    # The "any" scope also returns a finished job holding the key: look those up first.
    wanted_any = {
        j.idempotency_key
        for j in jobs
        if j.idempotency_scope == "any" and j.idempotency_key is not None
    }
    held_any = _holders(cur, wanted_any) if wanted_any else {}
    pending: list[int] = []
    for index, job in enumerate(jobs):
        key = job.idempotency_key
        holder = None if key is None else held_any.get(key)
        if job.idempotency_scope == "any" and holder is not None:
            results[index] = EnqueueResult(holder[0], holder[1], False)
        else:
            pending.append(index)

    rows = _insert(cur, [jobs[i] for i in pending], now, channel, keyed=True)
    # Rows come in the order given; jobs whose key a live job already held were skipped, and
    # only keyed jobs can be skipped.
    skipped: list[int] = []
    position = 0
    for index in pending:
        key = jobs[index].idempotency_key
        if position < len(rows) and rows[position][2] == key:
            job_id, state, _ = rows[position]
            results[index] = EnqueueResult(int(job_id), _STATES[state], True)
            position += 1
        else:
            skipped.append(index)

    if skipped:
        holders = _holders(cur, {jobs[i].idempotency_key or "" for i in skipped})
        for index in skipped:
            key = jobs[index].idempotency_key or ""
            if key not in holders:
                raise BackendError(
                    f"the job holding idempotency key {key!r} was deleted while this enqueue "
                    "waited for it; enqueue again"
                )
            job_id, state = holders[key]
            results[index] = EnqueueResult(job_id, state, False)

    done = [r for r in results if r is not None]
    assert len(done) == len(jobs)
    return done


def _check_queue_limits(cur: Cursor, jobs: Sequence[NewJob], limits: Mapping[str, int]) -> None:
    if not limits:
        return
    incoming = Counter(job.queue for job in jobs if job.queue in limits)
    # Locks in a fixed order: two batches touching the same limited queues cannot deadlock.
    for queue in sorted(incoming):
        cur.execute(Q["lock_queue"], {"queue": queue})
        row = cur.execute(Q["queue_depth"], {"queue": queue}).fetchone()
        depth = int(row[0]) if row else 0
        if depth + incoming[queue] > limits[queue]:
            raise QueueFull(queue, depth, limits[queue])


def _holders(cur: Cursor, keys: set[str]) -> dict[str, tuple[int, JobState]]:
    rows = cur.execute(Q["find_idempotent_any"], {"keys": sorted(keys)}).fetchall()
    return {key: (int(job_id), _STATES[state]) for key, job_id, state in rows}


def _insert(
    cur: Cursor, jobs: Sequence[NewJob], now: float | None, channel: str, *, keyed: bool
) -> list[tuple[Any, ...]]:
    """Insert ``jobs``; (id, state, key) of the rows made, in the order given."""
    if not jobs:
        return []
    conflicts = "\n" + Q["skip_held_keys"] if keyed else ""
    params: dict[str, Any] = {"now": now, "channel": channel}
    if len(jobs) < STAGE_FROM:
        query = Q["insert_jobs"] + conflicts + "\n" + Q["new_jobs_notify"]
        return cur.execute(query, {**params, **_columns(jobs)}).fetchall()
    cur.execute(Q["create_enqueue_stage"], prepare=False)
    with cur.copy(Q["copy_enqueue_stage"]) as copy:
        copy.set_types(_STAGE_TYPES)
        for job in jobs:
            copy.write_row(
                (
                    job.queue,
                    job.task,
                    job.args_json,
                    job.kwargs_json,
                    job.priority,
                    job.run_at,
                    job.delay,
                    job.max_attempts,
                    job.timeout,
                    job.idempotency_key,
                )
            )
    # Not prepared: the staging table is a new relation every time.
    query = Q["insert_jobs_staged"] + conflicts + "\n" + Q["new_jobs_notify"]
    return cur.execute(query, params, prepare=False).fetchall()


def _columns(jobs: Sequence[NewJob]) -> dict[str, list[Any]]:
    """One list per column. Numbers are normalized: psycopg refuses lists mixing int and float."""
    return {
        "queue": [j.queue for j in jobs],
        "task": [j.task for j in jobs],
        "args": [j.args_json for j in jobs],
        "kwargs": [j.kwargs_json for j in jobs],
        "priority": [int(j.priority) for j in jobs],
        "run_at": [None if j.run_at is None else float(j.run_at) for j in jobs],
        "delay": [float(j.delay) for j in jobs],
        "max_attempts": [int(j.max_attempts) for j in jobs],
        "timeout": [None if j.timeout is None else float(j.timeout) for j in jobs],
        "idempotency_key": [j.idempotency_key for j in jobs],
    }
