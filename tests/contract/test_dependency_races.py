"""Many parents of one child ending at the same moment in several processes: the child is
unblocked exactly once, by whichever end comes last."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from multiprocessing.queues import Queue

from conveyor.backends import open_backend
from conveyor.backends.base import Backend, Outcome, OutcomeKind
from conveyor.job import JobState
from conveyor.settings import Settings
from tests.support import new_job

PROCESSES = 4
PARENTS = 100


def finish_parents(
    settings: Settings,
    share: int,
    fail: bool,
    barrier: multiprocessing.synchronize.Barrier,
    results: Queue[int],
) -> None:
    """Body of a separate process: claim ``share`` parents, wait for the others, then finish
    each one in a transaction of its own, all processes at once."""
    backend = open_backend(settings)
    try:
        runs = backend.claim(f"racer-{share}", None, share, 60.0)
        barrier.wait(timeout=60)
        applied = 0
        for index, run in enumerate(runs):
            kind = OutcomeKind.DEAD if fail and index == len(runs) - 1 else OutcomeKind.SUCCEEDED
            outcome = Outcome(run.id, run.lease_token, kind, result_json="1", dead_reason="x")
            applied += sum(r.applied for r in backend.finish_many([outcome]))
        results.put(applied)
    finally:
        backend.close()


def race(backend: Backend, fail: bool = False, policy: str | None = None) -> tuple[int, Backend]:
    # A backend on the real clock, like the racing processes: the child's run_at and their
    # "now" are on the same clock.
    real = open_backend(backend.settings)
    parents = [r.job_id for r in real.enqueue_many([new_job() for _ in range(PARENTS)])]
    [child] = real.enqueue_many([new_job(depends_on=tuple(parents), on_parent_failure=policy)])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results: multiprocessing.Queue[int] = ctx.Queue()
    share = PARENTS // PROCESSES
    workers = [
        ctx.Process(
            target=finish_parents,
            args=(backend.settings, share, fail and i == 0, barrier, results),
            daemon=True,
        )
        for i in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    try:
        assert sum(results.get(timeout=120) for _ in workers) == PARENTS
    finally:
        for worker in workers:
            worker.join(timeout=30)
    return child.job_id, real


def test_the_last_of_many_concurrent_successes_unblocks_the_child_once(backend: Backend) -> None:
    child, real = race(backend)
    try:
        job = real.get(child)
        assert (job.state, job.pending_parents) == (JobState.QUEUED, 0)
        assert [r.id for r in real.claim("w", None, 10, 30.0)] == [child]
        assert real.claim("w", None, 10, 30.0) == []
    finally:
        real.close()


def test_a_failure_among_concurrent_successes_settles_the_child_once(backend: Backend) -> None:
    child, real = race(backend, fail=True, policy="run")
    try:
        job = real.get(child)
        assert (job.state, job.pending_parents) == (JobState.QUEUED, 0)
        assert [r.id for r in real.claim("w", None, 10, 30.0)] == [child]
    finally:
        real.close()
