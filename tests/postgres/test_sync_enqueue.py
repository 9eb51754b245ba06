"""PostgreSQL: ``task.enqueue(...)`` writes a single job on a session kept for single enqueues
(conveyor/backends/postgres/sync_enqueue.py), against the real server: one round trip, sessions
the server ends, a session lost mid-call, all sessions busy, a failed wake-up, a statement the
server forgot, a fork, threads, close."""

from __future__ import annotations

import logging
import multiprocessing
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import pq, sql

from conveyor import Conveyor
from conveyor.backends.postgres.prepared import PipelineAnswers
from conveyor.backends.postgres.sync_enqueue import PipelineSession, SyncSingles
from conveyor.errors import BackendUnavailable
from conveyor.job import JobState
from conveyor.task import Task
from tests.postgres.sessions import A, World, one_round_trip, wait_for
from tests.support import new_job


def _singles(world: World) -> SyncSingles:
    singles = world.backend._sync_singles
    assert singles is not None
    return singles


def _singles_made(world: World) -> SyncSingles:
    """The world's sync single enqueues, before their first session."""
    singles = world.backend._make_sync_singles()
    assert singles is not None
    return singles


def _session(world: World) -> PipelineSession:
    """The one idle session of the world's sync single enqueues."""
    [session] = _singles(world)._idle
    return session


def _listener(world: World) -> psycopg.Connection[Any]:
    """A session of the test's own, listening where the app's workers would."""
    conn = psycopg.connect(world.app.settings.url, autocommit=True)
    channel = sql.Identifier(f"{world.app.settings.postgres_schema}_jobs")
    conn.execute(sql.SQL(A["listen"]).format(channel=channel))
    return conn


def test_a_single_enqueue_is_one_round_trip_on_a_session_of_its_own(
    world: World, tmp_path: Path
) -> None:
    """The prepared insert and the wake-up behind it (a Sync apiece: a transaction each), sent
    before any answer comes back; no health probe, no BEGIN/COMMIT, no search_path."""
    with _listener(world) as listener:
        world.noop.options(queue="mail").enqueue(1)
        session = _session(world)
        trace = tmp_path / "trace.txt"
        with trace.open("w") as out:
            session.pgconn.trace(out.fileno())
            session.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            try:
                job = world.noop.options(queue="mail").enqueue(2)
            finally:
                session.pgconn.untrace()
        assert [n.payload for n in listener.notifies(timeout=5, stop_after=2)] == ["mail"] * 2

    assert world.app.get_job(job.id).args == [2]
    assert world.pids(world.sync_name) == {session.pgconn.backend_pid}
    assert world.backend._notifier._thread is None, "no notifier on the happy path"
    sent = one_round_trip(trace)
    assert sent.count("Sync") == 2 and sent.count("Bind") == 2, sent
    assert "Parse" not in sent and "Query" not in sent, "prepared statements, bound again"


def test_a_session_the_server_ended_while_idle_is_replaced_unseen(world: World) -> None:
    world.noop.enqueue(1)
    [first] = world.pids(world.sync_name)
    world.terminate(world.sync_name)

    job = world.noop.enqueue(2)

    assert world.app.get_job(job.id).args == [2]
    assert world.pids(world.sync_name) and first not in world.pids(world.sync_name)
    assert world.jobs() == 2


def test_a_call_lost_mid_way_is_backend_unavailable_not_run_again(world: World) -> None:
    """A single insert commits on its own, so a lost connection after it went out leaves its
    outcome unknown; running it again could write it twice."""
    world.noop.enqueue(0)  # the session, made before the lock
    raised: list[BaseException] = []

    def call() -> None:
        try:
            world.noop.enqueue(1)
        except BaseException as exc:  # handed to the test's thread
            raised.append(exc)

    with world.admin() as holder, holder.transaction(force_rollback=True):
        holder.execute(A["block_inserts"])
        caller = threading.Thread(target=call)
        caller.start()
        wait_for(lambda: any(row[2] == "Lock" for row in world.sessions(world.sync_name)))
        with psycopg.connect(world.app.settings.url, autocommit=True) as conn:
            conn.execute(A["terminate_waiting"], {"name": world.sync_name})
        caller.join(timeout=10)  # a retry would wait on the lock until this block ends
        assert raised, "the lost insert was sent again"
    caller.join()
    assert isinstance(raised[0], BackendUnavailable)
    assert "may or may not" in str(raised[0])
    after = world.noop.enqueue(2)
    assert world.app.get_job(after.id).args == [2]
    assert world.jobs() == 2, "the lost call's insert was rolled back with its session"


def test_with_every_session_busy_a_call_goes_through_the_pool(
    world_factory: Any,
) -> None:
    world = world_factory(postgres_pool_min_size=1, postgres_pool_max_size=1)
    world.noop.enqueue(1)
    singles = _singles(world)
    held = singles._take()  # the only session, busy elsewhere
    assert held is not None
    try:
        job = world.noop.enqueue(2)
    finally:
        singles._give_back(held)

    assert world.app.get_job(job.id).state is JobState.QUEUED
    assert len(world.pids(world.sync_name)) == 1, "no second session beyond the limit"
    assert world.jobs() == 2


def test_a_failed_wake_up_is_logged_and_leaves_the_committed_insert_alone(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The wake-up is a transaction of its own: the server refusing it (here a channel name
    over its 63 bytes) rolls nothing back, and the session goes on."""
    world.backend._channel = "x" * 100  # read when the sessions are first needed
    caplog.set_level(logging.WARNING)

    first = world.noop.enqueue(1)
    [session] = world.pids(world.sync_name)
    second = world.noop.enqueue(2)

    assert world.pids(world.sync_name) == {session}, "the same session goes on"
    assert [world.app.get_job(job.id).args for job in (first, second)] == [[1], [2]]
    assert caplog.text.count("channel name too long") == 2, caplog.text


def _deallocate_all(session: PipelineSession) -> None:
    """DEALLOCATE ALL on the session, as a pool's reset or a proxy might."""
    session.pgconn.send_query_params(b"DEALLOCATE ALL", None)
    session.pgconn.pipeline_sync()
    answers = PipelineAnswers(1)
    session.round_trip(answers)
    assert answers.results[0].status == pq.ExecStatus.COMMAND_OK


def test_statements_the_server_forgot_are_prepared_again(world: World) -> None:
    world.noop.enqueue(1)
    _deallocate_all(_session(world))

    job = world.noop.options(queue="again").enqueue(2)

    assert world.app.get_job(job.id).queue == "again"
    assert world.jobs() == 2


def test_threads_share_the_sessions_up_to_the_pool_size(world_factory: Any) -> None:
    world = world_factory(postgres_pool_min_size=1, postgres_pool_max_size=3)
    ids: list[int] = []
    lock = threading.Lock()

    def enqueue(first: int) -> None:
        for n in range(first, first + 25):
            job = world.noop.enqueue(n)
            with lock:
                ids.append(job.id)

    threads = [threading.Thread(target=enqueue, args=(100 * t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(ids)) == 200
    assert world.jobs() == 200
    assert 1 <= len(world.pids(world.sync_name)) <= 3


def _child(app: Conveyor, task: Task[..., Any], out: Any) -> None:
    job = task.enqueue(99)
    app.close()  # must not end the sessions it inherited
    out.put(job.id)


def test_a_forked_child_leaves_the_parents_session_alone(world: World) -> None:
    world.noop.enqueue(1)
    [parent_session] = world.pids(world.sync_name)

    context = multiprocessing.get_context("fork")
    out = context.Queue()
    child = context.Process(target=_child, args=(world.app, world.noop, out))
    child.start()
    child_job = out.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0

    again = world.noop.enqueue(2)
    assert world.pids(world.sync_name) == {parent_session}, "the parent's session survived"
    assert world.app.get_job(child_job).args == [99]
    assert world.app.get_job(again.id).args == [2]


def test_close_ends_the_sessions(world: World) -> None:
    world.noop.enqueue(1)
    assert world.pids(world.sync_name)

    world.app.close()

    wait_for(lambda: not world.sessions(world.sync_name))


def test_without_prepared_statements_there_are_no_sessions(world_factory: Any) -> None:
    """PgBouncer in transaction mode before 1.21: the pool's path, the notifier's wake-up."""
    world = world_factory(postgres_prepare_threshold=-1)
    job = world.noop.enqueue(1)

    assert world.app.get_job(job.id).args == [1]
    assert world.backend._sync_singles is None
    assert not world.sessions(world.sync_name)


def test_a_keyed_job_takes_the_transaction_path_and_no_session(world: World) -> None:
    [result] = world.backend.enqueue_many([new_job(idempotency_key="k")])

    assert result.created
    assert world.backend._sync_singles is None


def test_a_session_unused_for_max_idle_is_ended(world: World) -> None:
    """As the pool ends its connections beyond the minimum: the most used session stays."""
    world.noop.enqueue(1)
    singles = _singles(world)
    held = singles._take()
    assert held is not None
    world.noop.enqueue(2)  # a second session, the first being busy
    singles._give_back(held)
    assert len(world.pids(world.sync_name)) == 2
    [older, newer] = singles._idle
    older.idle_since -= world.app.settings.postgres_pool_max_idle + 1

    world.noop.enqueue(3)

    assert singles._idle == [newer]
    wait_for(lambda: world.pids(world.sync_name) == {newer.pgconn.backend_pid})
    assert world.jobs() == 3


def test_without_a_session_to_be_had_calls_go_through_the_pool_for_a_while(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server refusing new sessions (down, restarting, at its limit): the pool's path,
    which waits for a connection as it always has; no new session tried at every call."""
    singles = _singles_made(world)
    attempts: list[int] = []

    def refused() -> PipelineSession:
        attempts.append(1)
        raise BackendUnavailable("the server refused the session")

    monkeypatch.setattr(singles, "_open", refused)

    jobs = [world.noop.enqueue(n) for n in range(3)]

    assert [world.app.get_job(job.id).args for job in jobs] == [[0], [1], [2]]
    assert attempts == [1], "one attempt, then the pool's path for a while"
    assert not world.sessions(world.sync_name)
