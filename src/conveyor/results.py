"""Waiting for a job's result: ``app.result(job_id, timeout=)`` and ``job.wait(timeout=)``;
following one as it runs (``follow``, what ``conveyor watch`` shows).

A waiter reads its job, and reads it again only when a job may have ended: at once after a
finish or a cancel through this process's backend (its finish listeners); on PostgreSQL when
the NOTIFY that follows every transaction ending jobs arrives (on a channel of its own, sent
after the commit by the ending process's notifier session, one for all the transactions it
ended meanwhile: see backends/postgres/notifier.py); on SQLite when the file changed, which
costs one ``PRAGMA data_version`` (a read of shared memory, no I/O) every ``POLL`` seconds.
Besides, it reads the job every ``FALLBACK`` seconds whatever it heard, in case a wake-up was
missed (that notifier session was down, say).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

from conveyor.backends.base import Backend
from conveyor.errors import (
    ConfigurationError,
    ConveyorError,
    JobDead,
    JobWasCancelled,
    ResultTimeout,
)
from conveyor.job import Job, JobState

#: Seconds between looks at the backend's finish marker (no query on PostgreSQL).
POLL = 0.05
#: Seconds between reads of the job while nothing says it may have ended.
FALLBACK = 1.0


def outcome(job: Job) -> Any:
    """The result of a job that ended: its value, or JobDead / JobWasCancelled."""
    if job.state is JobState.SUCCEEDED:
        return job.result
    if job.state is JobState.DEAD:
        raise JobDead(job)
    if job.state is JobState.CANCELLED:
        raise JobWasCancelled(job)
    raise AssertionError(f"job {job.id} has not ended: it is {job.state}")


def check_timeout(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ConfigurationError(f"timeout must be a number of seconds, got {timeout!r}")
    if math.isnan(timeout) or timeout < 0:
        raise ConfigurationError(f"timeout must be >= 0 seconds, got {timeout}")
    return float(timeout)


def _marker(backend: Backend) -> int | None:
    try:
        return backend.finish_marker()
    except ConveyorError:  # the database is away: the fallback reads will tell
        return None


def wait_for(backend: Backend, job_id: int, timeout: float | None) -> Job:
    """The job once it has ended; ResultTimeout if it has not within ``timeout`` seconds."""
    timeout = check_timeout(timeout)
    deadline = None if timeout is None else time.monotonic() + timeout
    woken = threading.Event()
    wake = woken.set
    backend.add_finish_listener(wake)
    try:
        while True:
            # The marker before the read: a finish committed after the read moves it.
            marker = _marker(backend)
            job = backend.get(job_id)
            if job.state.is_terminal:
                return job
            fallback = time.monotonic() + FALLBACK
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    assert timeout is not None
                    raise ResultTimeout(job_id, timeout, job.state.value)
                step = min(POLL, fallback - now, *(() if deadline is None else (deadline - now,)))
                if woken.wait(max(step, 0.0)):
                    woken.clear()
                    break
                if _marker(backend) != marker or time.monotonic() >= fallback:
                    break
    finally:
        backend.remove_finish_listener(wake)


async def wait_for_async(backend: Backend, job_id: int, timeout: float | None) -> Job:
    """``wait_for`` on the event loop: the database reads run on a thread."""
    timeout = check_timeout(timeout)
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    woken = asyncio.Event()

    def wake() -> None:
        loop.call_soon_threadsafe(woken.set)

    backend.add_finish_listener(wake)
    try:
        while True:
            marker = await asyncio.to_thread(_marker, backend)
            job = await asyncio.to_thread(backend.get, job_id)
            if job.state.is_terminal:
                return job
            fallback = loop.time() + FALLBACK
            while True:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    assert timeout is not None
                    raise ResultTimeout(job_id, timeout, job.state.value)
                step = min(POLL, fallback - now, *(() if deadline is None else (deadline - now,)))
                try:
                    await asyncio.wait_for(woken.wait(), max(step, 0.0))
                except TimeoutError:
                    pass
                else:
                    woken.clear()
                    break
                if await asyncio.to_thread(_marker, backend) != marker or loop.time() >= fallback:
                    break
    finally:
        backend.remove_finish_listener(wake)


#: Seconds between reads of a followed job while nothing says it ended: how soon a change of
#: its progress shows.
FOLLOW_POLL = 0.5


def _seen(job: Job) -> tuple[Any, ...]:
    """What a follower shows of a job: a change in any of it is worth a new line."""
    error = job.last_error
    return (
        job.state,
        job.attempts,
        job.lost_runs,
        job.cancel_requested,
        job.pending_parents,
        job.run_at,
        repr(job.progress),
        None if error is None else (error.attempt, error.type, error.message),
    )


def follow(backend: Backend, job_id: int, *, poll: float = FOLLOW_POLL) -> Iterator[Job]:
    """The job now, then again each time what a person follows of it changed (state,
    attempt, progress, last error, cancel request), ending with it terminal. JobNotFound if
    there is no such job.

    Its end is seen as soon as ``wait_for`` would see it (finish listeners, the finish
    marker); progress, which no engine announces, every ``poll`` seconds."""
    if isinstance(poll, bool) or not isinstance(poll, int | float) or not 0 < poll < math.inf:
        raise ConfigurationError(f"poll must be a number of seconds > 0, got {poll!r}")
    woken = threading.Event()
    wake = woken.set
    backend.add_finish_listener(wake)
    try:
        shown: tuple[Any, ...] | None = None
        while True:
            marker = _marker(backend)
            job = backend.get(job_id)
            seen = _seen(job)
            if seen != shown:
                shown = seen
                yield job
            if job.state.is_terminal:
                return
            next_read = time.monotonic() + poll
            while (left := next_read - time.monotonic()) > 0:
                if woken.wait(min(POLL, left)):
                    woken.clear()
                    break
                if _marker(backend) != marker:
                    break
    finally:
        backend.remove_finish_listener(wake)
