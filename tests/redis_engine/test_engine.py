"""What only the Redis engine has: its key layout, the eviction check at connect, scripts loaded
again after SCRIPT FLUSH, and connections that come back by themselves. The behaviour it shares
with the other engines is the contract suite's (tests/contract)."""

from __future__ import annotations

import gc
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import cast

import pytest
import redis
from redis.crc import key_slot

from conveyor.backends.redis import RedisBackend
from conveyor.backends.redis.connection import key_prefix
from conveyor.errors import BackendError, BackendUnavailable, ConfigurationError, StorageFull
from conveyor.job import JobState
from conveyor.settings import Settings
from tests.contract.helpers import LEASE, claim_one, enqueue, succeed
from tests.redis_engine.factory import drop_prefix, new_prefix, server_url
from tests.redis_engine.server import kill_when_paused, private_server
from tests.support import new_job


@pytest.fixture
def private(tmp_path: Path) -> Iterator[str]:
    with private_server(tmp_path) as url:
        yield url


def open_on(url: str, **overrides: object) -> RedisBackend:
    return RedisBackend(Settings.load(env={}, url=url, redis_prefix=new_prefix(), **overrides))


def test_every_key_sits_under_the_prefix_in_one_slot() -> None:
    url = server_url()
    backend = open_on(url)
    other = open_on(url)
    try:
        ids = [enqueue(backend, queue=q, delay=d) for q in ("a", "b") for d in (0, 60)]
        run = claim_one(backend)
        backend.set_concurrency_limit("a", 3)
        backend.save_progress(run.id, run.lease_token, '"half"', None)
        succeed(backend, backend.claim("w", None, 1, LEASE)[0])
        client = redis.Redis.from_url(url, decode_responses=True)
        prefix = key_prefix(backend.settings)
        pattern = prefix.replace("{", "\\{").replace("}", "\\}") + ":*"
        keys = list(client.scan_iter(match=pattern))
        assert len(keys) > 10
        assert {key_slot(key.encode()) for key in keys} == {key_slot(prefix.encode())}
        client.close()
        # Another prefix on the same database is another application.
        assert other.list_jobs() == []
        assert sorted(job.id for job in backend.list_jobs()) == sorted(ids)
    finally:
        for b in (backend, other):
            b.close()
            drop_prefix(url, b.settings.redis_prefix)


def test_a_server_that_may_evict_keys_is_refused(tmp_path: Path) -> None:
    with (
        private_server(tmp_path, "--maxmemory-policy", "allkeys-lru") as url,
        pytest.raises(ConfigurationError, match=r"maxmemory-policy is 'allkeys-lru'"),
    ):
        open_on(url)


def test_redis_allow_eviction_turns_the_refusal_into_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with private_server(tmp_path, "--maxmemory-policy", "volatile-lru") as url:
        with caplog.at_level(logging.WARNING):
            backend = open_on(url, redis_allow_eviction=True)
        try:
            assert "volatile-lru" in caplog.text
            enqueue(backend)
            assert backend.stats()["default"][JobState.QUEUED] == 1
        finally:
            backend.close()


def test_scripts_are_loaded_again_after_script_flush(private: str) -> None:
    backend = open_on(private)
    try:
        enqueue(backend)
        redis.Redis.from_url(private).script_flush()
        run = claim_one(backend)
        assert succeed(backend, run).applied
        assert backend.get(run.id).state is JobState.SUCCEEDED
    finally:
        backend.close()


def test_commands_and_wake_ups_come_back_after_the_connections_are_killed(private: str) -> None:
    backend = open_on(private)
    admin = redis.Redis.from_url(private)
    try:
        backend.change_marker()  # subscribes
        listener = backend._listener
        assert listener.connected.wait(5)
        woken = threading.Event()
        backend.add_listener(lambda queues: woken.set() if "later" in queues else None)
        subscribed = listener.subscriptions
        admin.client_kill_filter(_type="normal", skipme=True)
        admin.client_kill_filter(_type="pubsub")
        # The next command reconnects (with backoff) instead of failing.
        job_id = enqueue(backend)
        assert backend.get(job_id).state is JobState.QUEUED
        # The subscription comes back by itself, and wake-ups published elsewhere arrive.
        other = RedisBackend(backend.settings)
        try:
            for _ in range(500):
                if listener.subscriptions > subscribed and listener.connected.is_set():
                    break
                threading.Event().wait(0.01)
            assert listener.subscriptions > subscribed
            other.enqueue_many([new_job(queue="later")])
            assert woken.wait(5)
        finally:
            other.close()
    finally:
        admin.close()
        backend.close()


def test_a_full_server_refuses_a_batch_whole(tmp_path: Path) -> None:
    with private_server(tmp_path, "--maxmemory", "4mb") as url:
        backend = open_on(url)
        try:
            big = '["' + "x" * 20_000 + '"]'
            written = 0
            with pytest.raises(StorageFull, match="out of memory"):
                for _ in range(1000):
                    backend.enqueue_many([new_job(args_json=big) for _ in range(10)])
                    written += 10
            assert written > 0
            # Nothing of the refused batch was written; every job written is whole.
            assert backend.stats()["default"][JobState.QUEUED] == written
            assert len(backend.list_jobs(limit=10_000)) == written
        finally:
            backend.close()


def test_a_plain_job_is_stored_as_the_general_path_stores_one() -> None:
    """enqueue_plain.lua (plain jobs, flat arguments), enqueue_one.lua (one plain job) and
    enqueue.lua write the same fields and index entries: a job with a queue limit takes the
    general path."""
    url = server_url()
    backend = open_on(url, queue_limits={"limited": 1_000})
    client = redis.Redis.from_url(url, decode_responses=True)
    prefix = key_prefix(backend.settings)
    try:
        stored = {}
        for queue in ("plain", "limited", "single"):
            jobs = [
                new_job(queue=queue, priority=-7, max_attempts=5, timeout=2.5),
                new_job(queue=queue, delay=60.25),
            ]
            if queue == "single":
                ready, later = map(backend.enqueue_one, jobs)
            else:
                ready, later = backend.enqueue_many(jobs)
            assert (ready.state, later.state) == (JobState.QUEUED, JobState.SCHEDULED)
            rows = []
            for result in (ready, later):
                row = cast("dict[str, str]", client.hgetall(f"{prefix}:job:{result.job_id}"))
                assert row.pop("id") == str(result.job_id)
                assert row.pop("queue") == queue
                assert float(row.pop("created_at")) == result.at
                if "rk" in row:
                    assert client.zscore(f"{prefix}:ready:{queue}", row["rk"]) == 0
                    assert client.zscore(f"{prefix}:ready", row["rk"]) == 0
                    row["rk"] = row["rk"].rsplit(":", 1)[0]
                else:
                    assert client.zscore(f"{prefix}:due", result.job_id) == float(row["run_at"])
                row["run_at"] = str(float(row["run_at"]) - result.at)
                assert client.zscore(f"{prefix}:jobs", result.job_id) == result.job_id
                rows.append(row)
            stored[queue] = rows
        heads = {queue: rows[0]["rk"].split(":")[0] for queue, rows in stored.items()}
        assert heads["plain"] == heads["limited"] == heads["single"]
        for rows in stored.values():
            rows[0]["rk"] = ""
        assert stored["plain"] == stored["limited"] == stored["single"]
        counts = backend.stats()
        assert (
            counts["plain"]
            == counts["limited"]
            == counts["single"]
            == {JobState.QUEUED: 1, JobState.SCHEDULED: 1}
        )
    finally:
        client.close()
        backend.close()
        drop_prefix(url, backend.settings.redis_prefix)


def test_a_batch_of_runs_is_stored_as_the_general_path_stores_it() -> None:
    """enqueue_plain.lua takes a batch as runs of jobs that share their options, and of each
    run only the argument texts that are not empty: runs of any length and kind, in any order,
    are stored job by job as enqueue.lua stores the same batch (its queues given a limit),
    claimed in the same order, and counted alike."""
    url = server_url()
    past = 1_000_000.0
    batch = [
        new_job(args_json="[1]"),
        new_job(args_json="[2]", kwargs_json='{"k": 2}'),
        new_job(task="tests.other", args_json="[3]"),
        new_job(args_json="[4]"),
        new_job(queue="q2", priority=5, args_json="[5]"),
        new_job(queue="q2", priority=5, args_json="[6]", delay=30.5),
        new_job(queue="q2", priority=5, args_json="[7]", delay=30.5),
        new_job(args_json="[8]", run_at=past, max_attempts=7),
        new_job(args_json="[9]", timeout=1.5),
        new_job(args_json="[10]", timeout=1.5, run_at=4e9),
        new_job(args_json="[11]"),
        new_job(task="tests.bare"),
        new_job(task="tests.bare"),
        new_job(task="tests.keywords", kwargs_json='{"a": 12}'),
        new_job(task="tests.keywords"),
        new_job(task="tests.one", kwargs_json='{"b": 13}'),
        new_job(task="tests.two", args_json="[14]", kwargs_json='{"c": 14}'),
        new_job(task="tests.three"),
    ]
    plain = open_on(url)
    general = open_on(url, queue_limits={"default": 1_000, "q2": 1_000})
    try:
        written = {b: b.enqueue_many(batch) for b in (plain, general)}
        ids = [r.job_id for r in written[plain]]
        assert ids == list(range(ids[0], ids[0] + len(batch)))
        assert [r.state for r in written[plain]] == [r.state for r in written[general]]
        assert {r.at for r in written[plain]} == {written[plain][0].at}

        def stored(backend: RedisBackend) -> list[dict[str, object]]:
            rows = []
            for result in written[backend]:
                job = backend.get(result.job_id)
                assert job.id == result.job_id and job.created_at == result.at
                row = {k: v for k, v in asdict(job).items() if k not in ("id", "created_at")}
                if job.run_at != past and job.run_at != 4e9:
                    row["run_at"] = job.run_at - job.created_at
                rows.append(row)
            return rows

        assert stored(plain) == stored(general)
        assert plain.stats() == general.stats()

        def order(backend: RedisBackend) -> list[str]:
            runs = backend.claim("w", None, len(batch), LEASE)
            return [json.dumps([run.task, run.args, run.kwargs]) for run in runs]

        assert order(plain) == order(general)
        assert [j.args for j in plain.list_jobs(states=[JobState.SCHEDULED])] == [
            [10],
            [7],
            [6],
        ]
    finally:
        for b in (plain, general):
            b.close()
            drop_prefix(url, b.settings.redis_prefix)


def test_a_plain_batch_with_an_invalid_job_is_refused_whole() -> None:
    """The NewJobs a backend is given were checked already; enqueue_plain.lua checks again
    what it would store wrong, before it writes anything."""
    url = server_url()
    backend = open_on(url)
    try:
        for bad, why in (
            (new_job(max_attempts=0), "position 3: max_attempts must be >= 1"),
            (new_job(priority=cast("int", 1.5)), "position 3: priority must be an integer"),
        ):
            with pytest.raises(BackendError, match=why):
                backend.enqueue_many([new_job(), new_job(queue="q2"), bad, new_job()])
        assert backend.stats() == {}
        assert backend.list_jobs() == []
    finally:
        backend.close()
        drop_prefix(url, backend.settings.redis_prefix)


def test_a_thread_gives_its_connection_back_to_the_pool_when_it_ends() -> None:
    url = server_url()
    backend = open_on(url)
    pool = backend._redis.connection_pool
    try:
        enqueue(backend)
        in_use = len(pool._in_use_connections)

        def work() -> None:
            enqueue(backend)
            assert claim_one(backend) is not None

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        gc.collect()
        # Each thread's connection is back in the pool, ready for others.
        assert len(pool._in_use_connections) == in_use
        assert pool._available_connections
        assert len(backend.list_jobs()) == 4
    finally:
        backend.close()
        drop_prefix(url, backend.settings.redis_prefix)


def test_a_closed_backends_client_leaves_its_pool_alone_when_collected() -> None:
    # At interpreter exit a daemon thread may be stopped holding the pool's lock; a client that
    # closed its pool again when collected then would wait for that lock forever.
    url = server_url()
    backend = open_on(url)
    enqueue(backend)
    backend.close()
    drop_prefix(url, backend.settings.redis_prefix)
    client = backend._redis
    held, release, collected = threading.Event(), threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        with client.connection_pool._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        assert held.wait(5)

        def collect() -> None:
            client.__del__()
            collected.set()

        collector = threading.Thread(target=collect)
        collector.start()
        assert collected.wait(5), "the collected client waited for its pool's lock"
    finally:
        release.set()
        holder.join()


@pytest.mark.parametrize("many", [False, True], ids=["enqueue_one", "enqueue_many"])
def test_an_enqueue_that_lost_its_connection_once_sent_is_not_sent_again(
    private: str, many: bool
) -> None:
    """Run twice, an enqueue writes its jobs twice: once it went out whole, a lost connection
    leaves its outcome unknown, which is said (BackendUnavailable), as on PostgreSQL. Here the
    server held the script (CLIENT PAUSE) and dropped the connection: it never ran, and a
    retry would have written it once the pause ended."""
    backend = open_on(private)
    admin = redis.Redis.from_url(private, decode_responses=True)
    raised: list[BaseException] = []

    def call() -> None:
        try:
            if many:
                backend.enqueue_many([new_job(), new_job()])
            else:
                backend.enqueue_one(new_job())
        except BaseException as exc:  # handed to the test's thread
            raised.append(exc)

    try:
        enqueue(backend)  # the script loaded, the thread's connection made
        admin.client_pause(10_000, all=False)  # writes (scripts) wait; admin's reads go on
        caller = threading.Thread(target=call)
        caller.start()
        kill_when_paused(admin)
        caller.join(10)
        admin.client_unpause()
        assert raised and isinstance(raised[0], BackendUnavailable), raised
        assert "may or may not" in str(raised[0])
        assert backend.stats()["default"] == {JobState.QUEUED: 1}, "not written again"
        enqueue(backend)  # the next call reconnects
        assert backend.stats()["default"] == {JobState.QUEUED: 2}
    finally:
        admin.client_unpause()
        admin.close()
        backend.close()


def test_an_idle_connection_the_server_ended_is_replaced_before_an_enqueue(
    private: str,
) -> None:
    """Not a lost enqueue: nothing was sent on it. The end of the stream is read first."""
    backend = open_on(private)
    admin = redis.Redis.from_url(private)
    try:
        enqueue(backend)
        admin.client_kill_filter(_type="normal", skipme=True)
        enqueue(backend)
        backend.enqueue_many([new_job(), new_job()])
        assert backend.stats()["default"] == {JobState.QUEUED: 4}
    finally:
        admin.close()
        backend.close()
