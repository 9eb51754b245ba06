"""Contract: idempotency keys at enqueue, within a batch and across processes."""

from __future__ import annotations

import multiprocessing
import queue

import pytest

from conveyor.backends.base import Backend
from conveyor.job import JobState
from tests.contract.helpers import (
    claim_one,
    enqueue,
    enqueue_same_key,
    make_job_in,
    succeed,
    total,
)
from tests.support import FakeClock, new_job


def test_a_key_held_by_a_live_job_returns_that_job(backend: Backend) -> None:
    [first] = backend.enqueue_many([new_job(idempotency_key="order-42", args_json="[1]")])
    [second] = backend.enqueue_many([new_job(idempotency_key="order-42", args_json="[2]")])

    assert first.created is True
    assert second.created is False
    assert second.job_id == first.job_id
    assert second.state is JobState.QUEUED
    assert total(backend) == 1
    assert backend.get(first.job_id).args == [1], "the existing job is returned untouched"
    assert backend.get(first.job_id).idempotency_key == "order-42"


@pytest.mark.parametrize(
    "state", [JobState.SCHEDULED, JobState.RUNNING, JobState.RETRYING], ids=str
)
def test_every_live_state_holds_the_key(
    backend: Backend, clock: FakeClock, state: JobState
) -> None:
    job_id = make_job_in(backend, clock, state, idempotency_key="k")
    [again] = backend.enqueue_many([new_job(idempotency_key="k")])
    assert again.created is False
    assert again.job_id == job_id
    assert again.state is state
    assert total(backend) == 1


def test_the_same_key_twice_in_one_batch_makes_one_job(backend: Backend) -> None:
    results = backend.enqueue_many(
        [
            new_job(args_json='["a"]'),
            new_job(idempotency_key="dup", args_json='["b"]'),
            new_job(args_json='["c"]'),
            new_job(idempotency_key="dup", args_json='["d"]'),
            new_job(idempotency_key="other", args_json='["e"]'),
        ]
    )
    assert [r.created for r in results] == [True, True, True, False, True]
    assert results[3].job_id == results[1].job_id
    assert len({r.job_id for r in results}) == 4
    assert total(backend) == 4
    assert backend.get(results[1].job_id).args == ["b"]
    assert [backend.get(r.job_id).args for r in results] == [["a"], ["b"], ["c"], ["b"], ["e"]]


def test_scope_live_creates_a_new_job_once_the_holder_ended(
    backend: Backend, clock: FakeClock
) -> None:
    first = enqueue(backend, idempotency_key="report")
    succeed(backend, claim_one(backend))

    [second] = backend.enqueue_many([new_job(idempotency_key="report")])
    assert second.created is True
    assert second.job_id != first
    assert backend.get(first).state is JobState.SUCCEEDED
    assert backend.get(second.job_id).state is JobState.QUEUED

    # The new job holds the key now.
    [third] = backend.enqueue_many([new_job(idempotency_key="report")])
    assert third.created is False
    assert third.job_id == second.job_id


@pytest.mark.parametrize("state", [JobState.DEAD, JobState.CANCELLED], ids=str)
def test_scope_live_ignores_dead_and_cancelled_holders(
    backend: Backend, clock: FakeClock, state: JobState
) -> None:
    old = make_job_in(backend, clock, state, idempotency_key="k")
    [new] = backend.enqueue_many([new_job(idempotency_key="k")])
    assert new.created is True
    assert new.job_id != old


def test_scope_any_returns_the_finished_job(backend: Backend, clock: FakeClock) -> None:
    first = enqueue(backend, idempotency_key="once", idempotency_scope="any")
    succeed(backend, claim_one(backend), result_json='"done"')

    [again] = backend.enqueue_many([new_job(idempotency_key="once", idempotency_scope="any")])
    assert again.created is False
    assert again.job_id == first
    assert again.state is JobState.SUCCEEDED
    assert total(backend) == 1

    # While live, "any" also returns the live job.
    live = enqueue(backend, idempotency_key="live-any", idempotency_scope="any")
    [dup] = backend.enqueue_many([new_job(idempotency_key="live-any", idempotency_scope="any")])
    assert dup.created is False
    assert dup.job_id == live


def test_different_keys_make_different_jobs(backend: Backend) -> None:
    results = backend.enqueue_many([new_job(idempotency_key=f"k{i}") for i in range(5)])
    assert all(r.created for r in results)
    assert len({r.job_id for r in results}) == 5


@pytest.mark.slow
def test_concurrent_enqueues_from_several_processes_make_exactly_one_job(
    backend: Backend,
) -> None:
    processes, times = 4, 25
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results: multiprocessing.Queue[list[int]] = ctx.Queue()
    workers = [
        ctx.Process(
            target=enqueue_same_key,
            args=(backend.settings, "exactly-once", times, barrier, results),
            daemon=True,
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        collected: list[list[int]] = []
        for _ in workers:
            try:
                collected.append(results.get(timeout=60))
            except queue.Empty:
                pytest.fail(f"a process did not report: exit codes {[w.exitcode for w in workers]}")
        for worker in workers:
            worker.join(timeout=30)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()

    ids = {job_id for batch in collected for job_id in batch}
    assert len(ids) == 1, f"one key made several jobs: {sorted(ids)}"
    assert sum(len(batch) for batch in collected) == processes * times
    jobs = backend.list_jobs(task="tests.once")
    assert [job.id for job in jobs] == list(ids)
    assert jobs[0].idempotency_key == "exactly-once"
    assert total(backend) == 1
