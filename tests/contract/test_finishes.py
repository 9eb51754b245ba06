"""Contract: telling those waiting on results that jobs may have ended. Finish listeners hear
the finishes and cancels of their own backend; ``finish_marker`` moves when another process
(here another backend on the same store, with connections of its own) ends a job."""

from __future__ import annotations

import time

from conveyor.backends import open_backend
from conveyor.backends.base import Backend
from conveyor.job import JobState
from tests.contract.helpers import claim_one, enqueue, kill, succeed
from tests.support import FakeClock


def moved(backend: Backend, before: int, timeout: float = 10.0) -> bool:
    """Whether ``finish_marker`` moves away from ``before`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while backend.finish_marker() == before:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def test_finish_listeners_hear_every_way_a_job_ends(backend: Backend, clock: FakeClock) -> None:
    heard: list[str] = []
    listener = lambda: heard.append("ended")  # noqa: E731
    backend.add_finish_listener(listener)
    try:
        first, second, third = enqueue(backend), enqueue(backend), enqueue(backend)
        succeed(backend, claim_one(backend))
        assert heard, "a success is heard"
        heard.clear()
        kill(backend, claim_one(backend), clock)
        assert heard, "a dead letter is heard"
        heard.clear()
        backend.cancel(third)
        assert heard, "a cancel of a waiting job is heard"
        assert [backend.get(i).state for i in (first, second, third)] == [
            JobState.SUCCEEDED,
            JobState.DEAD,
            JobState.CANCELLED,
        ]
    finally:
        backend.remove_finish_listener(listener)
    heard.clear()
    enqueue(backend)
    succeed(backend, claim_one(backend))
    assert heard == [], "a removed listener hears nothing"


def test_finish_marker_moves_when_another_process_ends_a_job(
    backend: Backend, clock: FakeClock
) -> None:
    done, dead, cancelled = enqueue(backend), enqueue(backend), enqueue(backend)
    other = open_backend(backend.settings, clock=clock)
    try:
        marker = backend.finish_marker()
        run = claim_one(other)
        assert run.id == done
        succeed(other, run)
        assert moved(backend, marker), "a success elsewhere moves the marker"

        marker = backend.finish_marker()
        kill(other, claim_one(other), clock)
        assert moved(backend, marker), "a dead letter elsewhere moves the marker"

        marker = backend.finish_marker()
        other.cancel(cancelled)
        assert moved(backend, marker), "a cancel elsewhere moves the marker"
    finally:
        other.close()
    assert backend.get(dead).state is JobState.DEAD
