"""enqueue_many on PostgreSQL, written once as steps (see steps.py) so that the same logic runs
on the pool's connections and inside an application's own transaction, sync or async.

- Small batches are one INSERT that takes one array per column, returns the new ids and sends
  one NOTIFY per queue (``insert_jobs``): a plain batch is that single statement. A batch of
  one job (the single enqueue) takes its values one by one instead (``insert_job``), which
  spares the arrays on both sides.
- Large batches without idempotency keys are COPYed straight into the jobs table: one statement
  reserves their ids from the table's own sequence (and sends the NOTIFYs, delivered at commit),
  then the rows travel as one text COPY. States and due times are computed here from the
  database's clock as read by that statement, exactly as the INSERT computes them in SQL.
- Large keyed batches are COPYed into a temporary table, then moved by one INSERT ... SELECT
  that skips keys already held (``insert_jobs_staged``).
- Idempotency keys are settled by the unique partial index itself: the INSERT says
  ``ON CONFLICT ... DO NOTHING``, so concurrent enqueues of one key from any number of processes
  produce exactly one job, and the skipped jobs report the holder of their key.
- Queue limits are checked under a per-queue advisory lock held until commit, so concurrent
  enqueues cannot overshoot a limit between counting and inserting.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import pq

from conveyor.backends.base import EnqueueResult, NewJob
from conveyor.backends.dependencies import has_dependencies, link_new_jobs
from conveyor.backends.postgres.connection import Connection, Q
from conveyor.backends.postgres.deps import as_steps
from conveyor.backends.postgres.errors import is_connection_lost, translate
from conveyor.backends.postgres.prepared import PreparedStatement
from conveyor.backends.postgres.steps import CopyIn, Statement, Steps
from conveyor.errors import BackendError, BackendUnavailable, ConveyorError, QueueFull
from conveyor.job import JobState
from conveyor.limits.buckets import new_buckets

#: From this many jobs on, COPY; below, one INSERT with array parameters is cheaper (one round
#: trip instead of three or four).
STAGE_FROM = 500

_STATES = {state.value: state for state in JobState}
_TEXT_STATES = {state.value.encode(): state for state in JobState}
_INSERT_SINGLE = Q["insert_job"] + "\n" + Q["new_job"]
#: The single enqueue's statements, under names that stay put (the async path runs them too).
INSERT_JOB = PreparedStatement("conveyor_insert_job", _INSERT_SINGLE)
WAKE_AFTER_COMMIT = PreparedStatement("conveyor_wake_after_commit", Q["wake_after_commit"])
#: Rows per COPY message: the server stores one chunk while the next is formatted.
_CHUNK = 1000
#: COPY's text format: these characters are escaped inside a field; NULL is \N.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def needs_transaction(jobs: Sequence[NewJob], queue_limits: Mapping[str, int]) -> bool:
    """A batch without limits, keys or COPY is a single statement, which commits alone."""
    return (
        len(jobs) >= STAGE_FROM
        or any(job.queue in queue_limits for job in jobs)
        or any(job.idempotency_key is not None for job in jobs)
        or any(job.rate_key is not None for job in jobs)
        or has_dependencies(jobs)
    )


def enqueue_steps(
    jobs: Sequence[NewJob],
    now: float | None,
    queue_limits: Mapping[str, int],
    channel: str,
    written: list[int] | None = None,
    meanwhile: Callable[[list[EnqueueResult]], None] | None = None,
) -> Steps[list[EnqueueResult]]:
    """The body of enqueue_many; results in the order of ``jobs``. The jobs' queues are
    notified on ``channel`` (one NOTIFY per queue, delivered at commit).

    A COPYed batch knows its results before the server has stored every row: it hands them to
    ``meanwhile`` (the very list it returns) while the server works (see Backend.enqueue_many).

    ``written`` collects the ids of the rows inserted as soon as they are: should this raise
    after writing (QueueFull ...) inside a transaction it does not own, the caller deletes
    them, so that nothing of the batch can be committed."""
    written = [] if written is None else written
    if any(job.idempotency_key is not None for job in jobs):
        results = yield from _enqueue_keyed(jobs, now, channel, written)
    elif len(jobs) >= STAGE_FROM:
        results = yield from _copy_jobs(jobs, now, channel, written, meanwhile)
    else:
        rows = yield from _insert(jobs, now, channel, written, keyed=False)
        results = [EnqueueResult(int(job_id), _STATES[state], True) for job_id, state, _ in rows]
    if any(job.rate_key is not None for job in jobs):
        yield from _mark_rate_limited(jobs, results)
    yield from _check_queue_limits(jobs, results, queue_limits)
    if has_dependencies(jobs):
        yield from as_steps(link_new_jobs(jobs, results, now))
    return results


def _mark_rate_limited(jobs: Sequence[NewJob], results: Sequence[EnqueueResult]) -> Steps[None]:
    """The jobs of rate-limited tasks take their bucket's key, and their buckets exist, in the
    transaction that wrote them (see conveyor/limits/buckets.py)."""
    made = [(job, result) for job, result in zip(jobs, results, strict=True) if result.created]
    buckets = sorted(new_buckets(job for job, _ in made).items())
    if buckets:
        yield Statement(
            Q["upsert_rate_bucket"],
            {
                "tasks": [task for (task, _), _ in buckets],
                "keys": [key for (_, key), _ in buckets],
                "counts": [rate.count for _, rate in buckets],
                "pers": [float(rate.per) for _, rate in buckets],
            },
        )
    marked = [(result.job_id, job.rate_key) for job, result in made if job.rate_key is not None]
    if marked:
        yield Statement(
            Q["mark_rate_key"], {"ids": [i for i, _ in marked], "keys": [k for _, k in marked]}
        )


def is_single(jobs: Sequence[NewJob], queue_limits: Mapping[str, int]) -> bool:
    """One job without a key, in a queue without a limit: ``insert_single`` writes it."""
    return len(jobs) == 1 and not needs_transaction(jobs, queue_limits)


def insert_single(
    conn: Connection, job: NewJob, now: float | None, channel: str
) -> tuple[EnqueueResult, bool]:
    """The usual single enqueue on ``conn``, in autocommit, without the steps machinery: the
    prepared ``conveyor_insert_job`` and, in the same round trip, once it has committed, the
    prepared ``conveyor_wake_after_commit`` that wakes the queue's listeners (see
    prepared.py). The result, and whether the wake-up went: not with prepared statements
    turned off (PgBouncer in transaction mode before 1.21), when the caller has the notifier
    send it after the commit (see notifier.py)."""
    if conn.prepare_threshold is None:
        row = conn.execute(_INSERT_SINGLE, {"now": now, **_values(job)}, prepare=False).fetchone()
        assert row is not None
        return EnqueueResult(int(row[0]), _STATES[row[1]], True), False
    wake = [channel.encode(), job.queue.encode()]
    result = INSERT_JOB.run_then(conn, text_values(job, now), WAKE_AFTER_COMMIT, wake)
    return enqueued(result), True


def enqueued(result: pq.abc.PGresult) -> EnqueueResult:
    """What ``INSERT_JOB``'s row (id, state) says of the job it wrote."""
    job_id, state = result.get_value(0, 0), result.get_value(0, 1)
    assert job_id is not None and state is not None
    return EnqueueResult(int(job_id), _TEXT_STATES[state], True)


def insert_failed(error: psycopg.Error, target: str) -> ConveyorError:
    """What a single enqueue whose insert answered with ``error`` raises: the server ending
    the session (its farewell as the answer, perhaps after the commit) as a lost connection,
    the rest as the engine's errors."""
    if is_connection_lost(error):
        return BackendUnavailable.enqueue_lost(target, error)
    return translate(error, target)


def _enqueue_keyed(
    jobs: Sequence[NewJob], now: float | None, channel: str, written: list[int]
) -> Steps[list[EnqueueResult]]:
    results: list[EnqueueResult | None] = [None] * len(jobs)

    # The "any" scope also returns a finished job holding the key: look those up first.
    wanted_any = {
        j.idempotency_key
        for j in jobs
        if j.idempotency_scope == "any" and j.idempotency_key is not None
    }
    held_any = (yield from _holders(wanted_any)) if wanted_any else {}
    pending: list[int] = []
    for index, job in enumerate(jobs):
        key = job.idempotency_key
        holder = None if key is None else held_any.get(key)
        if job.idempotency_scope == "any" and holder is not None:
            results[index] = EnqueueResult(holder[0], holder[1], False)
        else:
            pending.append(index)

    rows = yield from _insert([jobs[i] for i in pending], now, channel, written, keyed=True)
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
        holders = yield from _holders({jobs[i].idempotency_key or "" for i in skipped})
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


def _check_queue_limits(
    jobs: Sequence[NewJob], results: Sequence[EnqueueResult], limits: Mapping[str, int]
) -> Steps[None]:
    """Counted after inserting, so a job an idempotency key resolved to an existing one takes
    no room; raising rolls the whole batch back. The per-queue lock makes concurrent batches
    count one after the other, each seeing what the ones before it committed."""
    if not limits:
        return
    created = Counter(
        job.queue
        for job, result in zip(jobs, results, strict=True)
        if result.created and job.queue in limits
    )
    # Locks in a fixed order: two batches touching the same limited queues cannot deadlock.
    for queue in sorted(created):
        yield Statement(Q["lock_queue"], {"queue": queue})
        rows = yield Statement(Q["queue_depth"], {"queue": queue})
        depth = int(rows[0][0]) if rows else 0
        if depth > limits[queue]:
            raise QueueFull(queue, depth - created[queue], limits[queue])


def _holders(keys: set[str]) -> Steps[dict[str, tuple[int, JobState]]]:
    rows = yield Statement(Q["find_idempotent_any"], {"keys": sorted(keys)})
    return {key: (int(job_id), _STATES[state]) for key, job_id, state in rows}


def _insert(
    jobs: Sequence[NewJob], now: float | None, channel: str, written: list[int], *, keyed: bool
) -> Steps[list[Any]]:
    """Insert ``jobs``; (id, state, key) of the rows made, in the order given."""
    if not jobs:
        return []
    conflicts = "\n" + Q["skip_held_keys"] if keyed else ""
    params: dict[str, Any] = {"now": now, "channel": channel}
    if len(jobs) == 1:
        query = Q["insert_job"] + conflicts + "\n" + Q["new_job_notify"]
        rows = yield Statement(query, {**params, **_values(jobs[0])})
        rows = [row[:3] for row in rows]
    elif len(jobs) < STAGE_FROM:
        query = Q["insert_jobs"] + conflicts + "\n" + Q["new_jobs_notify"]
        rows = yield Statement(query, {**params, **_columns(jobs)})
    else:
        yield Statement(Q["create_enqueue_stage"], prepare=False)
        yield CopyIn(Q["copy_enqueue_stage"], _stage_payload(jobs))
        # Not prepared: the staging table is a new relation every time.
        query = Q["insert_jobs_staged"] + conflicts + "\n" + Q["new_jobs_notify"]
        rows = yield Statement(query, params, prepare=False)
        # Dropped at once rather than at commit: a caller's transaction may enqueue again.
        yield Statement(Q["drop_enqueue_stage"], prepare=False)
    written.extend(int(row[0]) for row in rows)
    return rows


def _copy_jobs(
    jobs: Sequence[NewJob],
    now: float | None,
    channel: str,
    written: list[int],
    meanwhile: Callable[[list[EnqueueResult]], None] | None,
) -> Steps[list[EnqueueResult]]:
    """The bulk path: ids reserved first, rows COPYed straight into the jobs table."""
    queues = sorted({job.queue for job in jobs})
    count = len(jobs)
    rows = yield Statement(
        Q["reserve_jobs"], {"now": now, "count": count, "channel": channel, "queues": queues}
    )
    epoch, first, last, _ = rows[0]
    ids: Sequence[int]
    if last - first + 1 == count:
        ids = range(first, last + 1)
    else:
        rows = yield Statement(Q["reserve_ids"], {"count": count})
        ids = sorted(rows[0][0])
    # Exact to the microsecond: a float64 near 2e9 resolves a quarter of one.
    clock = datetime.fromtimestamp(epoch, UTC)
    # The server's clock and nothing delayed: every row takes now() for its times by default.
    due_now = now is None and not any(job.run_at is not None or job.delay for job in jobs)
    states: list[JobState] = []
    results: list[EnqueueResult] = []

    def sent() -> None:
        # Every chunk is formatted by now, so every state is known.
        results.extend(
            EnqueueResult(job_id, state, True, at=epoch)
            for job_id, state in zip(ids, states, strict=True)
        )
        if meanwhile is not None:
            meanwhile(results)

    query = Q["copy_jobs_due_now"] if due_now else Q["copy_jobs"]
    yield CopyIn(query, _jobs_payload(jobs, ids, clock, states, times=not due_now), sent)
    written.extend(ids)
    return results


# --- COPY payloads (text format) ---------------------------------------------------------------


def _text(value: str) -> str:
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.translate(_ESCAPES)
    return value


def _nullable(value: str | None) -> str:
    return "\\N" if value is None else _text(value)


def _number(value: float | None) -> str:
    return "\\N" if value is None else repr(value)


def _jobs_payload(
    jobs: Sequence[NewJob],
    ids: Sequence[int],
    clock: datetime,
    states: list[JobState],
    *,
    times: bool,
) -> Iterator[str]:
    """COPY rows for ``copy_jobs`` (``times``) or ``copy_jobs_due_now``, in chunks, appending
    the state of each job to ``states``. From the database's ``clock``: due at ``run_at``, else
    ``delay`` seconds after ``clock``; scheduled if due later."""
    queued, scheduled = JobState.QUEUED, JobState.SCHEDULED
    now_text = clock.isoformat()
    names: dict[str, str] = {}
    lines: list[str] = []
    for job_id, job in zip(ids, jobs, strict=True):
        if job.run_at is None and not job.delay:
            due_text, state = now_text, queued
        else:
            due = _due(job, clock)
            due_text, state = due.isoformat(), (scheduled if due > clock else queued)
        states.append(state)
        queue = names.get(job.queue) or names.setdefault(job.queue, _text(job.queue))
        task = names.get(job.task) or names.setdefault(job.task, _text(job.task))
        timeout = "\\N" if job.timeout is None else repr(float(job.timeout))
        row = (
            f"{job_id}\t{queue}\t{task}\t{_text(job.args_json)}\t{_text(job.kwargs_json)}\t"
            f"{state.value}\t{int(job.priority)}\t{int(job.max_attempts)}\t{timeout}"
        )
        lines.append(f"{row}\t{due_text}\t{now_text}\n" if times else f"{row}\n")
        if len(lines) == _CHUNK:
            yield "".join(lines)
            lines.clear()
    if lines:
        yield "".join(lines)


def _due(job: NewJob, clock: datetime) -> datetime:
    try:
        if job.run_at is not None:
            return datetime.fromtimestamp(job.run_at, UTC)
        return clock + timedelta(seconds=job.delay)
    except (OverflowError, ValueError, OSError):
        raise BackendError(
            f"the due time of a job of {job.task} is out of range "
            f"(run_at={job.run_at}, delay={job.delay})"
        ) from None


def _stage_payload(jobs: Sequence[NewJob]) -> Iterator[str]:
    """COPY rows for ``copy_enqueue_stage``, in chunks."""
    for start in range(0, len(jobs), _CHUNK):
        yield _stage_rows(jobs[start : start + _CHUNK])


def _stage_rows(jobs: Sequence[NewJob]) -> str:
    return "".join(
        f"{_text(j.queue)}\t{_text(j.task)}\t{_text(j.args_json)}\t{_text(j.kwargs_json)}\t"
        f"{int(j.priority)}\t{_number(None if j.run_at is None else float(j.run_at))}\t"
        f"{float(j.delay)!r}\t{int(j.max_attempts)}\t"
        f"{_number(None if j.timeout is None else float(j.timeout))}\t"
        f"{_nullable(j.idempotency_key)}\n"
        for j in jobs
    )


def _values(job: NewJob) -> dict[str, Any]:
    """The parameters of insert_job, typed as _columns types them."""
    return {
        "queue": job.queue,
        "task": job.task,
        "args": job.args_json,
        "kwargs": job.kwargs_json,
        "priority": int(job.priority),
        "run_at": None if job.run_at is None else float(job.run_at),
        "delay": float(job.delay),
        "max_attempts": int(job.max_attempts),
        "timeout": None if job.timeout is None else float(job.timeout),
        "idempotency_key": job.idempotency_key,
    }


def text_values(job: NewJob, now: float | None, encoding: str = "utf-8") -> list[bytes | None]:
    """The parameters of ``INSERT_JOB`` as the server reads them in text, in its order, in
    the session's ``encoding`` (the async path's: async_enqueue.py)."""
    return [
        job.queue.encode(encoding),
        job.task.encode(encoding),
        job.args_json.encode(encoding),
        job.kwargs_json.encode(encoding),
        b"%d" % job.priority,
        b"%d" % job.max_attempts,
        None if job.timeout is None else repr(float(job.timeout)).encode(),
        None if job.idempotency_key is None else job.idempotency_key.encode(encoding),
        None if job.run_at is None else repr(float(job.run_at)).encode(),
        repr(float(job.delay)).encode(),
        None if now is None else repr(now).encode(),
    ]


#: text_values's order: the order of first appearance in the statement.
assert INSERT_JOB.params == (
    "queue",
    "task",
    "args",
    "kwargs",
    "priority",
    "max_attempts",
    "timeout",
    "idempotency_key",
    "run_at",
    "delay",
    "now",
), INSERT_JOB.params


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
