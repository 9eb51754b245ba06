"""Redis killed mid-run: with ``appendfsync always`` nothing acknowledged is lost, leases survive
the restart, and producers and workers carry on by themselves.

Each test runs its own redis-server (AOF on, fsync before every reply) on a free port with a
folder of its own, SIGKILLs it while real producer and worker processes use it, and starts it
again on the same port with the same folder. The producers and workers are never restarted.
"""

from __future__ import annotations

import json
import secrets
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import cast

import pytest
import redis

from conveyor import JobState
from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.rows import to_claimed
from conveyor.backends.redis.scripts import Scripts
from tests.chaos.helpers import Helpers
from tests.redis_engine.restartable import (
    ALWAYS,
    RestartableServer,
    make_redis_world,
    restartable_server,
)
from tests.worker.harness import HEARTBEAT, LEASE, SWEEP, Workers, World, wait_for

pytestmark = pytest.mark.slow

PRODUCERS = 2


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RestartableServer]:
    with restartable_server(tmp_path / "redis", *ALWAYS) as found:
        yield found


@pytest.fixture
def world(tmp_path: Path, server: RestartableServer) -> Iterator[World]:
    found = make_redis_world(tmp_path, server.url)
    try:
        yield found
    finally:
        found.app.close()


@pytest.fixture
def workers(world: World) -> Iterator[Workers]:
    manager = Workers(world)
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.fixture
def helpers(tmp_path: Path) -> Iterator[Helpers]:
    manager = Helpers(tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()


def logged_ids(log: Path) -> list[int]:
    """The ids a producer logged; a line being written (no newline yet) is not counted."""
    if not log.exists():
        return []
    text = log.read_text()
    return [int(line) for line in text.split("\n")[:-1]]


def total(world: World) -> Counter[JobState]:
    counts: Counter[JobState] = Counter()
    for per_queue in world.app.stats().values():
        counts.update(per_queue)
    return counts


def test_sigkill_redis_mid_run_loses_no_acknowledged_enqueue_and_everyone_carries_on(
    tmp_path: Path, server: RestartableServer, world: World, workers: Workers, helpers: Helpers
) -> None:
    release = tmp_path / "release"
    hold = world.app.get_task("sample.hold")
    held = [hold.enqueue(str(release)).id for _ in range(3)]
    w = workers.start("W", concurrency=20)
    wait_for(lambda: len({e.job_id for e in world.effects("start")}) == 3, "W to start 3 holds")

    stop = tmp_path / "stop"
    logs = [tmp_path / f"producer-{i}.ids" for i in range(PRODUCERS)]
    producers = [
        helpers.start(
            f"producer-{i}",
            ["-m", "tests.redis_engine.producer", str(log), str(stop)],
            world.settings_env,
        )
        for i, log in enumerate(logs)
    ]
    wait_for(lambda: all(len(logged_ids(log)) >= 100 for log in logs), "producers under way")
    wait_for(lambda: len(world.effects("done")) >= 100, "W to run the producers' jobs")

    server.sigkill()
    # Every enqueue that returned so far was fsynced to the AOF before its reply.
    acknowledged = {log: logged_ids(log) for log in logs}
    server.start()

    # Nobody is restarted: the producers' and W's clients reconnect by themselves.
    wait_for(
        lambda: all(len(logged_ids(log)) >= len(acknowledged[log]) + 100 for log in logs),
        "each producer to enqueue 100 more jobs after the restart",
        on_timeout=lambda: "\n".join(p.log() for p in producers),
    )
    stop.touch()
    for producer in producers:
        assert producer.wait_exit() == 0, producer.log()
        assert "producer exiting normally" in producer.log()
        # The restart took well under the client's retry budget: no enqueue gave up. The one
        # under way when the server died may say it may or may not have been written: it is
        # not sent again, since a second copy would be a second job.
        failed = [line for line in producer.log().splitlines() if "enqueue failed" in line]
        assert len(failed) <= 1 and all("may or may not" in line for line in failed), failed
    release.touch()

    enqueued = {job_id for log in logs for job_id in logged_ids(log)} | set(held)
    for log in logs:
        assert set(acknowledged[log]) <= set(logged_ids(log))
    wait_for(
        lambda: (
            (counts := total(world))[JobState.SUCCEEDED] >= len(enqueued)
            and set(counts) == {JobState.SUCCEEDED}
        ),
        "W to drain every job",
        on_timeout=lambda: f"{total(world)}\n{w.log()}",
    )
    assert w.alive(), "W died with Redis"

    # Every acknowledged enqueue is there, and finished once.
    jobs = world.jobs(sorted(enqueued))
    assert [job.id for job in jobs if job.state is not JobState.SUCCEEDED] == []
    dones = Counter(e.job_id for e in world.effects("done"))
    assert {job_id: n for job_id, n in dones.items() if n != 1} == {}, "a job ran to its end twice"
    assert set(dones) >= enqueued
    for job in world.jobs(held):
        # W kept its leases across the restart: its runs were never taken from it.
        assert (job.attempts, job.lost_runs, job.result) == (1, 0, w.pid), job
    # An enqueue retried after its first try was applied but not answered (the kill fell
    # between the fsync and the reply) leaves one extra job nobody was told of; it runs too.
    extra = total(world)[JobState.SUCCEEDED] - len(enqueued)
    assert 0 <= extra <= PRODUCERS


def test_an_enqueue_sent_while_the_server_restarts_waits_for_it(
    server: RestartableServer, world: World
) -> None:
    """The client retries a refused connect with backoff: an enqueue made while the server is
    down for a moment returns once it is back, instead of failing at once."""
    add = world.app.get_task("sample.add")
    first = add.enqueue(1, 1).id
    server.sigkill()
    restart = threading.Timer(0.3, server.start)
    restart.start()
    try:
        second = add.enqueue(2, 2).id
    finally:
        restart.join()
    assert second == first + 1
    assert [job.state for job in world.jobs([first, second])] == [JobState.QUEUED] * 2


def redis_client(world: World) -> redis.Redis:
    """A client decoding replies as the engine's does."""
    return redis.Redis.from_url(world.settings_env["CONVEYOR_URL"], decode_responses=True)


def test_a_claim_sent_again_after_its_reply_was_lost_starts_no_other_run(world: World) -> None:
    """redis-py sends a script again, with the same arguments, when the connection broke before
    its reply: a claim that had run must answer with its own runs again. Starting others would
    leave the first ones running under a live worker that does not know them and that excludes
    its own runs from rescue -- running for good (seen here once: Redis killed between its AOF
    fsync and the reply)."""
    add = world.app.get_task("sample.add")
    ids = [add.enqueue(n, n).id for n in range(3)]
    backend = world.app.backend
    assert isinstance(backend, RedisBackend)
    scripts = Scripts(redis_client(world), backend.prefix)
    tokens = json.dumps([secrets.token_hex(16) for _ in range(2)])
    claim = ("claim", None, "worker-1", "30.0", 2, "", 0, "[]", tokens)

    first, _ = scripts.run(*claim)
    again, _ = scripts.run(*claim)

    assert len(first) == 2
    by_id = {job.id: job for job in map(to_claimed, first)}
    assert {job.id: job for job in map(to_claimed, again)} == by_id
    assert world.count(JobState.RUNNING) == 2
    assert world.app.get_job(ids[2]).state is JobState.QUEUED


def test_a_suspect_claim_sent_again_after_its_reply_was_lost_answers_the_same_run(
    world: World,
) -> None:
    """As above, for the claim of a suspect (a job whose run was lost), which a worker makes
    only while it holds no run: the replay finds the worker holding the run it started."""
    job_id = world.app.get_task("sample.add").enqueue(1, 1).id
    backend = world.app.backend
    assert isinstance(backend, RedisBackend)
    [lost] = backend.claim("worker-0", None, 1, 0.001)
    wait_for(lambda: backend.rescue_expired().requeued, "the run's lease to run out")
    scripts = Scripts(redis_client(world), backend.prefix)
    claim = ("claim_suspect", None, "worker-1", "30.0", "0", "", "[]", secrets.token_hex(16))

    first = scripts.run(*claim)
    again = scripts.run(*claim)

    assert first is not None and to_claimed(first).id == lost.id == job_id
    assert again is not None and to_claimed(again) == to_claimed(first)
    assert world.app.get_job(job_id).state is JobState.RUNNING


def test_a_frozen_workers_jobs_are_rescued_after_their_lease_across_a_restart(
    tmp_path: Path, server: RestartableServer, world: World, workers: Workers
) -> None:
    release = tmp_path / "release"
    hold = world.app.get_task("sample.hold")
    ids = [hold.enqueue(str(release)).id for _ in range(3)]
    a = workers.start("A", concurrency=5)
    wait_for(lambda: len({e.job_id for e in world.effects("start")}) == 3, "A to start 3 holds")
    b = workers.start("B", concurrency=5)

    # A stops beating: its leases (stored, with their expiry, in the AOF) run out while Redis
    # is down and after; B, which lost its connection too, must take the jobs back by itself.
    a.freeze()
    frozen_at = time.time()
    server.sigkill()
    server.start()
    release.touch()
    wait_for(
        lambda: world.all_in(ids, JobState.SUCCEEDED),
        "B to rescue and finish A's jobs",
        on_timeout=lambda: world.describe(ids),
    )
    for job in world.jobs(ids):
        # A held three jobs when it went silent: none can be blamed, so the lost run is not
        # charged as an attempt (as on the other engines).
        assert (job.attempts, job.lost_runs, job.result) == (1, 1, b.pid), job
    for e in world.effects("start"):
        if e.worker_pid == b.pid:
            # Not before the last lease A renewed ran out; not later than lease + one sweep.
            assert e.at >= frozen_at - HEARTBEAT + LEASE - 0.2, "rescued before the lease ran out"
            assert e.at <= frozen_at + LEASE + SWEEP + 10, "rescued later than lease + sweep"

    a.send(signal.SIGCONT)
    wait_for(
        lambda: {e.job_id for e in world.effects("done") if e.worker_pid == a.pid} == set(ids),
        "A's stale runs to finish their function bodies",
    )
    a.send(signal.SIGTERM)
    assert a.wait_exit() == 0, a.log()
    for job in world.jobs(ids):
        # A's outcomes were fenced off: the jobs stay as B left them.
        assert (job.state, job.attempts, job.result) == (JobState.SUCCEEDED, 1, b.pid)
    assert "lease lost" in a.log()
    assert b.alive()


def test_a_worker_is_woken_by_pubsub_again_after_a_restart(
    server: RestartableServer, world: World, workers: Workers
) -> None:
    """A job enqueued after the restart is picked up at once, not by the 1 s fallback poll."""
    add = world.app.get_task("sample.add")
    w = workers.start("W", concurrency=2)
    channel = "{conveyor:chaos}:wake"  # key_prefix() of the world's prefix
    probe = redis.Redis.from_url(server.url)

    def subscribed() -> bool:
        try:
            found = cast("list[tuple[bytes, int]]", probe.pubsub_numsub(channel))
            return dict(found).get(channel.encode(), 0) >= 1
        except redis.ConnectionError:
            return False

    def pickups(count: int) -> list[float]:
        delays = []
        for n in range(count):
            enqueued_at = time.time()
            job_id = add.enqueue(n, 1).id
            [done] = wait_for(partial(world.effects, "done", job_id), f"job {job_id} to run")
            delays.append(done.at - enqueued_at)
        return delays

    wait_for(subscribed, "W to subscribe")
    before = pickups(10)
    server.sigkill()
    probe.close()
    server.start()
    wait_for(subscribed, "W to subscribe again after the restart", on_timeout=w.log)
    after = pickups(10)
    probe.close()
    print(
        f"pickup after enqueue, median: before the restart {statistics.median(before) * 1000:.1f}"
        f" ms, after {statistics.median(after) * 1000:.1f} ms",
        file=sys.stderr,
    )
    # Polling alone would take 0.5 s on average (the fallback re-check is every second).
    assert statistics.median(after) < 0.25, after
    assert w.alive()
