"""How the Redis engine finds the jobs to prune: P:ended lists the jobs in the order they
ended (lua/prune.lua). Entries are hints, checked against the job when reached; a store of
layout 1 (a sorted set P:done) is moved over when it is opened."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from conveyor.backends.base import Outcome, OutcomeKind
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.backend import _PRUNE_CHUNK, LAYOUT_VERSION
from conveyor.backends.redis.connection import key_prefix
from conveyor.errors import JobNotFound
from conveyor.job import JobState
from conveyor.settings import Settings
from tests.contract.helpers import LEASE, claim_one, enqueue, make_job_in, succeed
from tests.redis_engine.factory import drop_prefix, new_prefix, server_url
from tests.support import FakeClock

HOUR = 3600.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def prefix() -> Iterator[str]:
    name = new_prefix()
    yield name
    drop_prefix(server_url(), name)


def open_backend(prefix: str, clock: FakeClock) -> RedisBackend:
    settings = Settings.load(env={}, url=server_url(), redis_prefix=prefix)
    return RedisBackend(settings, clock=clock)


def client() -> redis.Redis:
    return redis.Redis.from_url(server_url(), decode_responses=True)


def keys_of(backend: RedisBackend) -> str:
    return key_prefix(backend.settings)


def test_a_job_that_ended_again_is_pruned_by_its_last_end_only(
    prefix: str, clock: FakeClock
) -> None:
    backend = open_backend(prefix, clock)
    try:
        job_id = make_job_in(backend, clock, JobState.CANCELLED)
        clock.advance(2 * HOUR)
        backend.requeue([job_id])
        succeed(backend, claim_one(backend))
        # Its first end is old enough, its last is not.
        assert backend.prune(older_than=HOUR) == 0
        assert backend.get(job_id).state is JobState.SUCCEEDED
        clock.advance(2 * HOUR)
        assert backend.prune(older_than=HOUR) == 1
        with pytest.raises(JobNotFound):
            backend.get(job_id)
        assert client().llen(f"{keys_of(backend)}:ended") == 0
    finally:
        backend.close()


def test_entries_of_jobs_waiting_again_are_dropped_without_counting(
    prefix: str, clock: FakeClock
) -> None:
    backend = open_backend(prefix, clock)
    try:
        again = [make_job_in(backend, clock, JobState.CANCELLED) for _ in range(3)]
        done = make_job_in(backend, clock, JobState.SUCCEEDED)
        backend.requeue(again)
        clock.advance(2 * HOUR)
        assert backend.prune(older_than=HOUR) == 1
        with pytest.raises(JobNotFound):
            backend.get(done)
        assert {backend.get(job_id).state for job_id in again} == {JobState.QUEUED}
        assert client().llen(f"{keys_of(backend)}:ended") == 0
    finally:
        backend.close()


def test_a_parent_kept_for_its_child_waits_apart_and_goes_when_the_child_ends(
    prefix: str, clock: FakeClock
) -> None:
    backend = open_backend(prefix, clock)
    try:
        parent = enqueue(backend)
        child = enqueue(backend, depends_on=(parent,), delay=10 * HOUR)
        succeed(backend, claim_one(backend))
        clock.advance(2 * HOUR)
        assert backend.prune(older_than=HOUR) == 0
        redis_client = client()
        assert redis_client.zcard(f"{keys_of(backend)}:ended_held") == 1
        assert redis_client.llen(f"{keys_of(backend)}:ended") == 0
        clock.advance(10 * HOUR)
        succeed(backend, claim_one(backend))
        clock.advance(2 * HOUR)
        assert backend.prune(older_than=HOUR) == 2
        for job_id in (parent, child):
            with pytest.raises(JobNotFound):
                backend.get(job_id)
        assert redis_client.zcard(f"{keys_of(backend)}:ended_held") == 0
    finally:
        backend.close()


def test_a_layout_1_store_gets_its_finished_jobs_listed(prefix: str, clock: FakeClock) -> None:
    backend = open_backend(prefix, clock)
    keys = keys_of(backend)
    done = [make_job_in(backend, clock, JobState.SUCCEEDED) for _ in range(3)]
    backend.close()
    # The same jobs as layout 1 kept them: by finished_at in a sorted set.
    redis_client = client()
    redis_client.delete(f"{keys}:ended")
    for job_id in done:
        finished_at = redis_client.hget(f"{keys}:job:{job_id}", "finished_at")
        redis_client.zadd(f"{keys}:done", {str(job_id): float(str(finished_at))})
    redis_client.set(f"{keys}:layout", 1)

    backend = open_backend(prefix, clock)
    try:
        assert redis_client.get(f"{keys}:layout") == str(LAYOUT_VERSION)
        assert not redis_client.exists(f"{keys}:done")
        clock.advance(2 * HOUR)
        assert backend.prune(older_than=HOUR) == 3
    finally:
        backend.close()


def test_a_batch_larger_than_one_script_s_chunk_is_deleted_whole(
    prefix: str, clock: FakeClock
) -> None:
    backend = open_backend(prefix, clock)
    try:
        count = _PRUNE_CHUNK + 50
        for _ in range(count):
            enqueue(backend)
        runs = backend.claim("w", None, count, LEASE)
        backend.finish_many([Outcome(r.id, r.lease_token, OutcomeKind.SUCCEEDED) for r in runs])
        clock.advance(2 * HOUR)
        assert backend.prune(older_than=HOUR, batch=count - 10) == count - 10
        assert backend.prune(older_than=HOUR, batch=count) == 10
        assert backend.list_jobs() == []
    finally:
        backend.close()


def test_a_job_that_ends_keeps_no_rank_and_gets_one_again_when_requeued(
    prefix: str, clock: FakeClock
) -> None:
    backend = open_backend(prefix, clock)
    try:
        done = make_job_in(backend, clock, JobState.SUCCEEDED)
        dead = make_job_in(backend, clock, JobState.DEAD)
        redis_client = client()
        for job_id in (done, dead):
            assert not redis_client.hexists(f"{keys_of(backend)}:job:{job_id}", "rk")
        backend.requeue([dead])
        assert redis_client.hexists(f"{keys_of(backend)}:job:{dead}", "rk")
        assert claim_one(backend).id == dead
    finally:
        backend.close()
