"""PostgreSQL: ``await task.enqueue_async(...)`` writes its job from the event loop, on
sessions of that loop (conveyor/backends/postgres/async_enqueue.py), against the real server:
several loops, a fork, sessions the server ends, cancelled callers, more callers than
sessions."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq, sql
from psycopg_pool import ConnectionPool

from conveyor import Conveyor
from conveyor.backends.postgres.loop_session import LoopSession
from conveyor.backends.postgres.prepared import PreparedStatement
from conveyor.errors import BackendUnavailable, DatabaseBusy
from conveyor.job import Job, JobState
from conveyor.task import Task
from tests.postgres.factory import migrated_schema, session_database
from tests.postgres.sessions import A, World, noop_task, one_round_trip, wait_for


def _listener(world: World) -> psycopg.Connection[Any]:
    """A session of the test's own, listening where the app's workers would."""
    conn = psycopg.connect(world.app.settings.url, autocommit=True)
    channel = sql.Identifier(f"{world.app.settings.postgres_schema}_jobs")
    conn.execute(sql.SQL(A["listen"]).format(channel=channel))
    return conn


def _heard(listener: psycopg.Connection[Any], count: int) -> list[str]:
    """The payloads of the next ``count`` notifications (5 s at most)."""
    return [n.payload for n in listener.notifies(timeout=5, stop_after=count)]


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """wait_for, from a coroutine: the loop keeps running meanwhile."""
    await asyncio.to_thread(wait_for, condition, timeout)


def _waiting_on_a_lock(world: World) -> Callable[[], bool]:
    return lambda: any(row[2] == "Lock" for row in world.sessions())


def test_jobs_are_written_from_the_loop_on_one_prepared_session(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = world.app.backend

    def no_thread(job: Any) -> Any:
        raise AssertionError("the async enqueue took the sync path on a thread")

    monkeypatch.setattr(backend, "enqueue_one", no_thread)

    async def enqueue() -> list[Job]:
        return [await world.noop.enqueue_async(n) for n in range(5)]

    jobs = asyncio.run(enqueue())

    assert [job.args for job in jobs] == [[n] for n in range(5)]
    assert all(job.state is JobState.QUEUED for job in jobs)
    for job in jobs:  # in the app's schema: the session's search_path is the pool's
        assert world.app.get_job(job.id).args == job.args
    assert world.jobs() == 5
    [session] = world.sessions()
    assert session[1] == "idle"


def test_the_wake_up_goes_behind_the_insert_in_the_same_round_trip(
    world: World, tmp_path: Path
) -> None:
    """As on the sync path: both prepared statements sent before any answer comes back, a
    Sync apiece (the wake-up a transaction of its own), and no notifier session."""
    loop = asyncio.new_event_loop()
    trace = tmp_path / "trace.txt"
    try:
        with _listener(world) as listener:
            loop.run_until_complete(world.noop.options(queue="mail").enqueue_async(1))
            singles = world.backend._singles
            assert singles is not None
            [session] = singles._loops[loop]._idle
            with trace.open("w") as out:
                session.pgconn.trace(out.fileno())
                session.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
                try:
                    job = loop.run_until_complete(world.noop.options(queue="mail").enqueue_async(2))
                finally:
                    session.pgconn.untrace()
            assert _heard(listener, 2) == ["mail", "mail"]
    finally:
        loop.close()

    assert world.app.get_job(job.id).args == [2]
    assert world.backend._notifier._thread is None, "no notifier on the happy path"
    sent = one_round_trip(trace)
    assert sent.count("Sync") == 2 and sent.count("Bind") == 2, sent
    assert "Parse" not in sent and "Query" not in sent, "prepared statements, bound again"


def test_a_failed_wake_up_leaves_the_committed_insert_alone(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The wake-up is a transaction of its own: the server refusing it (here a channel name
    over its 63 bytes) rolls nothing back, and the session goes on."""
    world.backend._channel = "x" * 100  # read when the loop's sessions are first needed

    async def enqueue() -> list[Job]:
        first = await world.noop.enqueue_async(1)
        [session] = world.pids()
        second = await world.noop.enqueue_async(2)
        assert world.pids() == {session}, "the same session goes on"
        return [first, second]

    jobs = asyncio.run(enqueue())

    assert [world.app.get_job(job.id).args for job in jobs] == [[1], [2]]
    assert world.jobs() == 2
    assert caplog.text.count("channel name too long") == 2, caplog.text


def test_a_delayed_job_is_scheduled_as_on_the_sync_path(world: World) -> None:
    job = asyncio.run(world.noop.options(delay=60).enqueue_async(1))

    assert job.state is JobState.SCHEDULED
    assert world.app.get_job(job.id).state is JobState.SCHEDULED


def test_each_event_loop_gets_its_own_sessions_and_a_closed_loops_are_ended(
    world: World,
) -> None:
    first = asyncio.run(world.noop.enqueue_async(1))
    [before] = world.pids()
    second = asyncio.run(world.noop.enqueue_async(2))  # a new loop: the first one is closed

    wait_for(lambda: len(world.pids()) == 1)
    assert world.pids() != {before}, "the closed loop's session was ended, a new one made"
    assert second.id == first.id + 1

    results: list[Job] = []

    def in_a_thread(n: int) -> None:
        results.append(asyncio.run(world.noop.enqueue_async(n)))

    threads = [threading.Thread(target=in_a_thread, args=(n,)) for n in (3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(job.args[0] for job in results) == [3, 4]

    world.app.close()
    wait_for(lambda: not world.sessions())


def _child(app: Conveyor, task: Task[..., Any], out: Any) -> None:
    job = asyncio.run(task.enqueue_async(99))
    app.close()  # must not end (nor unregister from the loop) the sessions it inherited
    out.put(job.id)


def test_a_forked_child_leaves_the_parents_session_alone(world: World) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(world.noop.enqueue_async(1))
        [parent_session] = world.pids()

        context = multiprocessing.get_context("fork")
        out = context.Queue()
        child = context.Process(target=_child, args=(world.app, world.noop, out))
        child.start()
        child_job = out.get(timeout=30)
        child.join(30)
        assert child.exitcode == 0

        again = loop.run_until_complete(world.noop.enqueue_async(2))
        assert parent_session in world.pids(), "the parent's session survived the child"
        assert world.app.get_job(child_job).args == [99]
        assert world.app.get_job(again.id).args == [2]
    finally:
        loop.close()


def test_a_session_the_server_ended_while_idle_is_replaced_unseen(world: World) -> None:
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(world.noop.enqueue_async(1))
        [first] = world.pids()
        world.terminate()  # while the loop is not running: nobody reads the farewell

        job = loop.run_until_complete(world.noop.enqueue_async(2))

        assert world.app.get_job(job.id).args == [2]
        assert world.pids() and first not in world.pids()
        assert world.jobs() == 2
    finally:
        loop.close()


def test_a_session_lost_mid_call_is_backend_unavailable_and_writes_nothing(
    world: World,
) -> None:
    async def scenario() -> None:
        await world.noop.enqueue_async(0)  # the loop's session, made before the lock
        with world.admin() as holder, holder.transaction(force_rollback=True):
            holder.execute(A["block_inserts"])
            call = asyncio.create_task(world.noop.enqueue_async(1))
            await _until(_waiting_on_a_lock(world))
            await asyncio.to_thread(world.terminate)
            with pytest.raises(BackendUnavailable, match="may or may not"):
                await call
        after = await world.noop.enqueue_async(2)
        assert world.app.get_job(after.id).args == [2]

    asyncio.run(scenario())
    assert world.jobs() == 2, "the lost call's insert was rolled back with its session"


def test_a_session_lost_after_the_first_statement_answers_with_that_one(world: World) -> None:
    """What was answered before the session broke is not lost with it: the insert's result
    comes back whether or not its wake-up's did."""
    first = PreparedStatement("test_first", A["select_one"])
    slow = PreparedStatement("test_slow", A["sleep"])

    async def scenario() -> None:
        conn = await world.backend._db.connect_async(application_name=world.async_name)
        session = LoopSession(conn, (first, slow), prepared=True)
        await session.prepare()
        call = asyncio.create_task(session.execute([(first, []), (slow, [])], _unheard))
        await _until(lambda: any(row[1] == "active" for row in world.sessions()))
        await asyncio.to_thread(world.terminate)
        results = await call
        assert [result.status for result in results] == [pq.ExecStatus.TUPLES_OK]
        assert session.broken

    asyncio.run(scenario())


def _unheard(session: LoopSession, results: Any) -> None:
    raise AssertionError("nobody stopped waiting")


def test_a_cancelled_call_commits_whole_or_not_and_gives_its_session_back(
    world: World,
) -> None:
    async def scenario() -> set[int]:
        await world.noop.enqueue_async(0)
        pids = world.pids()
        with world.admin() as holder, holder.transaction():
            holder.execute(A["block_inserts"])
            call = asyncio.create_task(world.noop.enqueue_async(1))
            await _until(_waiting_on_a_lock(world))
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
        # The lock is gone: the statement went on, and commits.
        await _until(lambda: world.jobs() == 2)
        await world.noop.enqueue_async(2)
        assert world.pids() == pids, "the same session, back in its pool"
        return pids

    asyncio.run(scenario())
    assert world.jobs() == 3


def test_more_callers_than_sessions_wait_their_turn(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(postgres_pool_min_size=1, postgres_pool_max_size=2)

    async def many() -> list[Job]:
        return await asyncio.gather(*(world.noop.enqueue_async(n) for n in range(30)))

    jobs = asyncio.run(many())

    assert sorted(job.args[0] for job in jobs) == list(range(30))
    assert len({job.id for job in jobs}) == 30
    assert world.jobs() == 30

    async def a_waiter_cancelled() -> None:
        # Both sessions held by blocked calls; a third caller waits for one and is cancelled.
        with world.admin() as holder, holder.transaction():
            holder.execute(A["block_inserts"])
            busy = [asyncio.create_task(world.noop.enqueue_async(n)) for n in (100, 101)]
            await _until(lambda: sum(row[2] == "Lock" for row in world.sessions()) == 2)
            waiting = asyncio.create_task(world.noop.enqueue_async(102))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
        await asyncio.gather(*busy)
        await asyncio.gather(*(world.noop.enqueue_async(n) for n in range(200, 210)))

    asyncio.run(a_waiter_cancelled())
    assert world.jobs() == 30 + 2 + 10


def test_the_session_takes_the_lock_timeout_of_the_pool(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(lock_timeout=0.2)

    async def scenario() -> None:
        with world.admin() as holder, holder.transaction(force_rollback=True):
            holder.execute(A["block_inserts"])
            with pytest.raises(DatabaseBusy):
                await world.noop.enqueue_async(1)
        job = await world.noop.enqueue_async(2)  # the session is fit for use again
        assert world.app.get_job(job.id).args == [2]

    asyncio.run(scenario())
    assert world.jobs() == 1


def test_without_prepared_statements_each_call_is_parsed_anew(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(postgres_prepare_threshold=-1)

    async def enqueue() -> list[Job]:
        return [await world.noop.enqueue_async(n) for n in range(3)]

    with _listener(world) as listener:
        jobs = asyncio.run(enqueue())
        # The notifier sends what is pending together: one to three of them.
        assert set(_heard(listener, 1)) == {"default"}

    assert [world.app.get_job(job.id).args for job in jobs] == [[0], [1], [2]]
    notifier = world.backend._notifier
    assert notifier.idle.wait(5)
    assert notifier._session is not None, "the wake-ups sent by the notifier, after the commits"


def test_on_the_applications_own_pool_the_write_takes_the_pool_from_a_thread() -> None:
    """The pool's connections are the application's to count: no sessions of Conveyor's own."""
    database = session_database()
    with (
        migrated_schema() as schema,
        ConnectionPool(database.url, min_size=1, max_size=2) as pool,
    ):
        app = Conveyor(pool, postgres_schema=schema)
        noop = app.task(name="noop")(noop_task)
        try:
            jobs = asyncio.run(_enqueue_three(noop))
            assert [app.get_job(job.id).args for job in jobs] == [[0], [1], [2]]
            with pool.connection() as conn:
                row = conn.execute(A["async_sessions"]).fetchone()
            assert row is not None and row[0] == 0
        finally:
            app.close()


async def _enqueue_three(task: Task[..., Any]) -> list[Job]:
    return [await task.enqueue_async(n) for n in range(3)]
