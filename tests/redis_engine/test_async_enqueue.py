"""enqueue_async on Redis: the script runs from the event loop, on a socket the loop watches
(backends/redis/aio.py), and whatever it cannot do there goes to the blocking path."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import redis

from conveyor import Conveyor
from conveyor.backends.base import EnqueueResult
from conveyor.backends.redis import RedisBackend
from conveyor.errors import BackendUnavailable
from conveyor.job import Job, JobState
from conveyor.settings import Settings
from tests.redis_engine.factory import drop_prefix, new_prefix, server_url
from tests.redis_engine.server import kill_when_paused, private_server
from tests.support import new_job


@pytest.fixture
def private(tmp_path: Path) -> Iterator[str]:
    with private_server(tmp_path) as url:
        yield url


def open_on(url: str) -> RedisBackend:
    return RedisBackend(Settings.load(env={}, url=url, redis_prefix=new_prefix()))


def offloaded(backend: RedisBackend) -> list[int]:
    """Counts the enqueues that take the blocking path (a thread) from now on."""
    calls: list[int] = []
    blocking = backend.enqueue_one

    def counted(job):  # type: ignore[no-untyped-def]
        calls.append(1)
        return blocking(job)

    backend.enqueue_one = counted  # type: ignore[method-assign]
    return calls


def test_concurrent_enqueues_of_one_loop_share_its_socket_and_get_their_own_replies() -> None:
    url = server_url()
    backend = open_on(url)
    try:
        backend.enqueue_one(new_job())  # the script is loaded on the blocking path
        calls = offloaded(backend)

        async def many() -> list[EnqueueResult]:
            jobs = [new_job(args_json=f"[{n}]", delay=60.0 * (n % 2)) for n in range(300)]
            return await asyncio.gather(*(backend.enqueue_one_async(job) for job in jobs))

        results = asyncio.run(many())
        assert calls == []  # none took a thread
        assert len({r.job_id for r in results}) == 300
        for n, result in enumerate(results):
            # Each caller got the reply to its own command: pipelined replies come in order.
            stored = backend.get(result.job_id)
            assert stored.args == [n]
            expected = JobState.SCHEDULED if n % 2 else JobState.QUEUED
            assert result.state is stored.state is expected
        assert backend.stats()["default"] == {JobState.QUEUED: 151, JobState.SCHEDULED: 150}
    finally:
        backend.close()
        drop_prefix(url, backend.settings.redis_prefix)


def test_a_thread_runs_one_loop_after_another_and_several_threads_their_own() -> None:
    url = server_url()
    backend = open_on(url)
    try:
        backend.enqueue_one(new_job())

        async def some() -> None:
            for _ in range(20):
                await backend.enqueue_one_async(new_job())

        asyncio.run(some())
        asyncio.run(some())  # another loop of the same thread takes over the socket
        threads = [threading.Thread(target=asyncio.run, args=(some(),)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert backend.stats()["default"] == {JobState.QUEUED: 1 + 20 * 5}
    finally:
        backend.close()
        drop_prefix(url, backend.settings.redis_prefix)


def test_a_killed_connection_or_a_flushed_script_falls_back_to_the_blocking_path(
    private: str,
) -> None:
    backend = open_on(private)
    admin = redis.Redis.from_url(private)
    try:
        backend.enqueue_one(new_job())
        calls = offloaded(backend)

        async def one() -> EnqueueResult:
            return await backend.enqueue_one_async(new_job())

        async def scenario() -> None:
            await one()
            assert calls == []
            admin.client_kill_filter(_type="normal", skipme=True)
            await one()  # the loop's socket broke: the blocking path reconnects
            assert calls == [1]
            await one()  # and the loop has a socket of its own again
            assert calls == [1]
            admin.script_flush()
            await one()  # NOSCRIPT: the blocking path loads the script again
            assert calls == [1, 1]
            await one()
            assert calls == [1, 1]

        asyncio.run(scenario())
        assert backend.stats()["default"] == {JobState.QUEUED: 6}
    finally:
        admin.close()
        backend.close()


def test_closing_the_backend_closes_the_connections_of_the_loops(private: str) -> None:
    admin = redis.Redis.from_url(private)

    def clients() -> int:
        return len(cast("list[object]", admin.client_list())) - 1  # without the admin's own

    backend = open_on(private)
    try:
        backend.enqueue_one(new_job())
        idle = clients()

        async def one() -> None:
            await backend.enqueue_one_async(new_job())

        async def in_loop() -> None:
            await one()
            assert clients() == idle + 1  # the loop's own connection
            # Closed from another thread while this loop runs: the loop forgets the socket.
            closer = threading.Thread(target=backend.close)
            closer.start()
            closer.join()
            await asyncio.sleep(0.05)

        asyncio.run(in_loop())
        assert clients() == 0
        # The same loop of a new backend, with a socket that may reuse the old number.
        other = open_on(private)
        try:
            other.enqueue_one(new_job())

            async def again() -> None:
                for _ in range(5):
                    await other.enqueue_one_async(new_job())

            asyncio.run(again())
            assert other.stats()["default"] == {JobState.QUEUED: 6}
        finally:
            other.close()
    finally:
        admin.close()


def test_task_enqueue_async_returns_the_job_as_stored() -> None:
    url = server_url()
    app = Conveyor(url, redis_prefix=new_prefix())

    @app.task(name="tests.add")
    def add(a: int, b: int) -> int:
        return a + b

    try:

        async def main() -> list[Job]:
            return [await add.enqueue_async(n, 1) for n in range(3)] + [
                await add.options(delay=30.0).enqueue_async(9, 1)
            ]

        jobs = asyncio.run(main())
        for job in jobs:
            stored = app.backend.get(job.id)
            assert (stored.args, stored.state, stored.created_at) == (
                job.args,
                job.state,
                job.created_at,
            )
        assert [job.state for job in jobs] == [JobState.QUEUED] * 3 + [JobState.SCHEDULED]
    finally:
        app.close()
        drop_prefix(url, app.settings.redis_prefix)


def test_an_enqueue_that_lost_its_connection_once_sent_is_not_sent_again(private: str) -> None:
    """As on the blocking path (test_engine.py): the script went out whole on the loop's
    socket, the server held it and dropped the connection; a second copy sent on the
    blocking path would have been written once the pause ended."""
    backend = open_on(private)
    admin = redis.Redis.from_url(private, decode_responses=True)
    try:
        backend.enqueue_one(new_job())  # the script is loaded on the blocking path

        async def scenario() -> None:
            await backend.enqueue_one_async(new_job())  # the loop's socket made
            admin.client_pause(10_000, all=False)
            call = asyncio.ensure_future(backend.enqueue_one_async(new_job()))
            await asyncio.to_thread(kill_when_paused, admin)
            with pytest.raises(BackendUnavailable, match="may or may not"):
                await asyncio.wait_for(call, 10)
            admin.client_unpause()
            await backend.enqueue_one_async(new_job())

        asyncio.run(scenario())
        assert backend.stats()["default"] == {JobState.QUEUED: 3}, "not written again"
    finally:
        admin.client_unpause()
        admin.close()
        backend.close()
