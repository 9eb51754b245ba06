"""Many backends on one store at once (each is what another process would open): limits hold,
claims never overlap, keys make one job, and large keyed batches take the COPY path."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.postgres import PostgresBackend
from conveyor.backends.postgres.enqueue import STAGE_FROM
from conveyor.errors import QueueFull
from conveyor.job import JobState
from tests.postgres.factory import postgres_backend
from tests.support import FakeClock, new_job

WORKERS = 4


@pytest.fixture
def limited(clock: FakeClock) -> Iterator[PostgresBackend]:
    with postgres_backend(None, clock, {"queue_limits": {"emails": 25}}) as backend:
        yield backend


def _together(
    backend: PostgresBackend, clock: FakeClock, work: Callable[[PostgresBackend, int], None]
) -> None:
    """Run ``work`` on WORKERS backends of the store at once; re-raise the first failure."""
    backends = [PostgresBackend(backend.settings, clock=clock) for _ in range(WORKERS)]
    start = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def run(mine: PostgresBackend, index: int) -> None:
        try:
            start.wait(10)
            work(mine, index)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(b, i)) for i, b in enumerate(backends)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for b in backends:
        b.close()
    if errors:
        raise errors[0]


def test_concurrent_enqueues_never_overshoot_a_queue_limit(
    limited: PostgresBackend, clock: FakeClock
) -> None:
    accepted = Counter[str]()
    lock = threading.Lock()

    def enqueue(mine: PostgresBackend, index: int) -> None:
        for _ in range(15):
            try:
                mine.enqueue_many([new_job(queue="emails"), new_job(queue="emails")])
            except QueueFull:
                continue
            with lock:
                accepted["emails"] += 2

    _together(limited, clock, enqueue)
    assert limited.stats()["emails"][JobState.QUEUED] == accepted["emails"] == 24


def test_concurrent_claims_never_take_a_job_twice(pg: PostgresBackend, clock: FakeClock) -> None:
    ids = {r.job_id for r in pg.enqueue_many([new_job(queue=f"q{i % 3}") for i in range(600)])}
    taken: list[int] = []
    lock = threading.Lock()

    def claim(mine: PostgresBackend, index: int) -> None:
        while batch := mine.claim("w", ["q0", "q1", "q2"] if index % 2 else None, 7, 30.0):
            with lock:
                taken.extend(c.id for c in batch)

    _together(pg, clock, claim)
    assert sorted(taken) == sorted(ids)


def test_concurrent_keyed_enqueues_make_one_job_per_key(
    pg: PostgresBackend, clock: FakeClock
) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def enqueue(mine: PostgresBackend, index: int) -> None:
        for round_ in range(10):
            # Opposite key orders in different threads: deadlocks are retried, not reported.
            keys = [f"k{round_}-{i}" for i in range(5)]
            if index % 2:
                keys.reverse()
            done = mine.enqueue_many([new_job(idempotency_key=k) for k in keys])
            with lock:
                results.extend(r.job_id for r in done)

    _together(pg, clock, enqueue)
    assert len(set(results)) == 50
    assert sum(pg.stats()["default"].values()) == 50


def test_a_large_keyed_batch_takes_the_copy_path(pg: PostgresBackend) -> None:
    held = pg.enqueue_many([new_job(idempotency_key="held"), new_job(idempotency_key="old")])
    run = pg.claim("w", None, 10, 30.0)
    finished = next(c for c in run if c.id == held[1].job_id)
    pg.finish_many([Outcome(finished.id, finished.lease_token, OutcomeKind.SUCCEEDED)])
    jobs = [new_job(args_json=f"[{i}]") for i in range(STAGE_FROM)]
    jobs[10] = new_job(idempotency_key="held")  # held by a live job: not inserted
    jobs[20] = new_job(idempotency_key="fresh")
    jobs[30] = new_job(idempotency_key="fresh")  # a duplicate within the batch
    jobs[40] = new_job(idempotency_key="old", idempotency_scope="any")  # a finished holder
    jobs[50] = new_job(idempotency_key="old")  # live scope: the finished one does not count

    results = pg.enqueue_many(jobs)

    assert len(results) == len(jobs)
    assert results[10].job_id == held[0].job_id and not results[10].created
    assert results[20].created and not results[30].created
    assert results[30].job_id == results[20].job_id
    assert results[40].job_id == held[1].job_id and not results[40].created
    assert results[40].state is JobState.SUCCEEDED
    assert results[50].created
    created = [r.job_id for r in results if r.created]
    assert created == sorted(created), "ids follow the order of the batch"
    assert len(created) == len(jobs) - 3
    assert pg.get(results[-1].job_id).args == [STAGE_FROM - 1]
